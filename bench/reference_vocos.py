#!/usr/bin/python3
"""Reference timing for Vocos: our own PyTorch restatement of the upstream
forward (gemelo-ai/vocos: VocosBackbone with ConvNeXtBlocks, ISTFTHead with
its ISTFT module; Vocos.decode = head(backbone(mel)) under inference_mode),
operation for operation as the upstream Python runs it, at full size with
random weights.

  reference_vocos.py --layout s3gen|24k --seconds S --threads N --reps R [--warmup K]
  reference_vocos.py --layout ... --weights model.safetensors --check dump.safetensors
      (loads our weights, runs the mel stored in the dump and compares with
       the audio bench_api computed: shows both sides run the same model)

Prints one JSON object."""

import argparse

import torch
from torch import nn

import reference_common as rc


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim, intermediate_dim, layer_scale_init_value):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x):
        residual = x
        x = self.dwconv(x)
        x = x.transpose(1, 2)  # (B, C, T) -> (B, T, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.transpose(1, 2)
        return residual + x


class VocosBackbone(nn.Module):
    def __init__(self, input_channels, dim, intermediate_dim, num_layers):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            [ConvNeXtBlock(dim, intermediate_dim, 1.0 / num_layers) for _ in range(num_layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.embed(x)
        x = self.norm(x.transpose(1, 2))
        x = x.transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    def __init__(self, n_fft, hop_length, win_length, padding):
        super().__init__()
        self.padding, self.n_fft, self.hop_length, self.win_length = padding, n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, spec):
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, self.window, center=True)
        pad = (self.win_length - self.hop_length) // 2
        B, N, T = spec.shape
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward")
        ifft = ifft * self.window[None, :, None]
        output_size = (T - 1) * self.hop_length + self.win_length
        y = torch.nn.functional.fold(ifft, output_size=(1, output_size), kernel_size=(1, self.win_length),
                                     stride=(1, self.hop_length))[:, 0, 0, pad:-pad]
        window_sq = self.window.square().expand(1, T, -1).transpose(1, 2)
        env = torch.nn.functional.fold(window_sq, output_size=(1, output_size), kernel_size=(1, self.win_length),
                                       stride=(1, self.hop_length)).squeeze()[pad:-pad]
        assert (env > 1e-11).all()
        return y / env


class ISTFTHead(nn.Module):
    def __init__(self, dim, n_fft, hop_length, padding):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, n_fft, padding)

    def forward(self, x):
        x = self.out(x).transpose(1, 2)
        mag, p = x.chunk(2, dim=1)
        mag = torch.exp(mag)
        mag = torch.clip(mag, max=1e2)
        S = mag * (torch.cos(p) + 1j * torch.sin(p))
        return self.istft(S)


class Vocos(nn.Module):
    def __init__(self, n_mels, hop, n_fft, padding, dim=512, intermediate_dim=1536, num_layers=8):
        super().__init__()
        self.backbone = VocosBackbone(n_mels, dim, intermediate_dim, num_layers)
        self.head = ISTFTHead(dim, n_fft, hop, padding)

    @torch.inference_mode()
    def decode(self, mel):
        return self.head(self.backbone(mel))


LAYOUTS = {  # n_mels, hop, n_fft, padding, sample rate
    "s3gen": (80, 480, 1920, "same", 24000),
    "24k": (100, 256, 1024, "center", 24000),
}


def frames_for(layout, seconds):
    n_mels, hop, n_fft, padding, sr = LAYOUTS[layout]
    n = int(round(seconds * sr))
    return n // hop if padding == "same" else 1 + n // hop  # as our MelExtractor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", choices=LAYOUTS, default="s3gen")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--weights")
    ap.add_argument("--check")
    a = ap.parse_args()
    rc.set_threads(a.threads)
    torch.manual_seed(0)
    n_mels, hop, n_fft, padding, sr = LAYOUTS[a.layout]
    model = Vocos(n_mels, hop, n_fft, padding).eval()
    out = {"model": "vocos-" + a.layout, "seconds": a.seconds, **rc.torch_info()}
    if a.weights:
        sd = {k: v for k, v in rc.read_safetensors(a.weights).items() if not k.startswith("feature_extractor.")}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        out["missing"], out["unexpected"] = list(missing), list(unexpected)
    if a.check:
        dump = rc.read_safetensors(a.check)
        y = model.decode(dump["mel"])
        out["check_rel_l2"], out["check_max_abs"] = rc.rel_l2(y, dump["audio"])
        out["check_samples"] = [y.shape[-1], dump["audio"].shape[-1]]
        rc.emit(out)
        return
    mel = torch.randn(1, n_mels, frames_for(a.layout, a.seconds)) * 2 - 5
    n = mel.shape[-1]
    out["samples"] = n * hop if padding == "same" else (n - 1) * hop
    out["audio_s"] = out["samples"] / sr
    warm = mel[..., :min(mel.shape[-1], frames_for(a.layout, 2.0))]
    out["ms"] = rc.time_calls(lambda: model.decode(mel), a.reps, a.warmup, lambda: model.decode(warm))
    out["peak_rss_kb"] = rc.peak_rss_kb()
    rc.emit(out)


if __name__ == "__main__":
    main()
