#!/usr/bin/python3
"""Reference timing for HiFT: our own PyTorch restatement of Chatterbox's
vocoder as upstream runs it (resemble-ai/chatterbox s3gen: HiFTGenerator with
ConvRNNF0Predictor, SourceModuleHnNSF/SineGen, Snake ResBlocks, weight-normed
convolutions (upstream never removes weight norm, so the weights are
recomputed on every call), torch.stft / torch.istft; S3Token2Wav's
hift_inference + trim fade), in Chatterbox's configuration (base 512,
upsample 8,5,3, n_fft 16 hop 4, 24 kHz), random weights.

  reference_hift.py --seconds S --threads N --reps R [--warmup K]
  reference_hift.py --weights model.safetensors --check dump.safetensors
      (our weights, deterministic source draws (zero phases, no noise) as
       bench_api's HiFT: compares with the audio bench_api computed)

Prints one JSON object."""

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions.uniform import Uniform
from torch.nn.utils import weight_norm  # torch 1.13: the hook form; later torch: parametrizations

import reference_common as rc

SR = 24000
DETERMINISTIC = False  # --check: zero phases / noise (our bench's deterministic mode)


def get_padding(k, d=1):
    return int((k * d - d) / 2)


class Snake(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(ch))
        self.no_div_by_zero = 0.000000001

    def forward(self, x):
        alpha = self.alpha.unsqueeze(0).unsqueeze(-1)
        return x + (1.0 / (alpha + self.no_div_by_zero)) * torch.pow(torch.sin(x * alpha), 2)


class ResBlock(nn.Module):
    def __init__(self, ch, k, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList([nn.Conv1d(ch, ch, k, 1, dilation=d, padding=get_padding(k, d)) for d in dilations])
        self.convs2 = nn.ModuleList([nn.Conv1d(ch, ch, k, 1, dilation=1, padding=get_padding(k, 1)) for _ in dilations])
        self.activations1 = nn.ModuleList([Snake(ch) for _ in dilations])
        self.activations2 = nn.ModuleList([Snake(ch) for _ in dilations])

    def forward(self, x):
        for i in range(len(self.convs1)):
            xt = self.activations1[i](x)
            xt = self.convs1[i](xt)
            xt = self.activations2[i](xt)
            xt = self.convs2[i](xt)
            x = xt + x
        return x


class SineGen(nn.Module):
    def __init__(self, samp_rate, harmonic_num, sine_amp, noise_std, voiced_threshold):
        super().__init__()
        self.sine_amp, self.noise_std, self.harmonic_num = sine_amp, noise_std, harmonic_num
        self.sampling_rate, self.voiced_threshold = samp_rate, voiced_threshold

    @torch.no_grad()
    def forward(self, f0):
        F_mat = torch.zeros((f0.size(0), self.harmonic_num + 1, f0.size(-1))).to(f0.device)
        for i in range(self.harmonic_num + 1):
            F_mat[:, i:i + 1, :] = f0 * (i + 1) / self.sampling_rate
        theta_mat = 2 * np.pi * (torch.cumsum(F_mat, dim=-1) % 1)
        if DETERMINISTIC:
            phase_vec = torch.zeros(f0.size(0), self.harmonic_num + 1, 1)
        else:
            phase_vec = Uniform(low=-np.pi, high=np.pi).sample(sample_shape=(f0.size(0), self.harmonic_num + 1, 1))
        phase_vec[:, 0, :] = 0
        sine_waves = self.sine_amp * torch.sin(theta_mat + phase_vec)
        uv = (f0 > self.voiced_threshold).type(torch.float32)
        noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        noise = noise_amp * (torch.zeros_like(sine_waves) if DETERMINISTIC else torch.randn_like(sine_waves))
        sine_waves = sine_waves * uv + noise
        return sine_waves, uv, noise


class SourceModuleHnNSF(nn.Module):
    def __init__(self, sampling_rate, harmonic_num, sine_amp, add_noise_std, voiced_threshod):
        super().__init__()
        self.sine_amp = sine_amp
        self.l_sin_gen = SineGen(sampling_rate, harmonic_num, sine_amp, add_noise_std, voiced_threshod)
        self.l_linear = nn.Linear(harmonic_num + 1, 1)
        self.l_tanh = nn.Tanh()

    def forward(self, x):
        with torch.no_grad():
            sine_wavs, uv, _ = self.l_sin_gen(x.transpose(1, 2))
            sine_wavs = sine_wavs.transpose(1, 2)
            uv = uv.transpose(1, 2)
        sine_merge = self.l_tanh(self.l_linear(sine_wavs))
        noise = torch.randn_like(uv) * self.sine_amp / 3
        return sine_merge, noise, uv


class ConvRNNF0Predictor(nn.Module):
    def __init__(self, num_class=1, in_channels=80, cond_channels=512):
        super().__init__()
        layers = []
        for k in range(5):
            layers += [nn.Conv1d(in_channels if k == 0 else cond_channels, cond_channels, 3, padding=1), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, num_class)

    def forward(self, x):
        x = self.condnet(x)
        x = x.transpose(1, 2)
        return torch.abs(self.classifier(x).squeeze(-1))


class HiFTGenerator(nn.Module):
    def __init__(self, in_channels=80, base_channels=512, nb_harmonics=8, sampling_rate=SR, nsf_alpha=0.1,
                 nsf_sigma=0.003, nsf_voiced_threshold=10, upsample_rates=(8, 5, 3), upsample_kernel_sizes=(16, 11, 7),
                 istft_params=None, resblock_kernel_sizes=(3, 7, 11),
                 resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)), source_resblock_kernel_sizes=(7, 7, 11),
                 source_resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)), lrelu_slope=0.1, audio_limit=0.99):
        super().__init__()
        self.istft_params = istft_params or {"n_fft": 16, "hop_len": 4}
        self.lrelu_slope, self.audio_limit = lrelu_slope, audio_limit
        self.num_kernels, self.num_upsamples = len(resblock_kernel_sizes), len(upsample_rates)
        n_fft = self.istft_params["n_fft"]
        self.m_source = SourceModuleHnNSF(sampling_rate, nb_harmonics, nsf_alpha, nsf_sigma, nsf_voiced_threshold)
        self.f0_upsamp = nn.Upsample(scale_factor=int(np.prod(upsample_rates)) * self.istft_params["hop_len"])
        self.conv_pre = nn.Conv1d(in_channels, base_channels, 7, 1, padding=3)
        self.ups = nn.ModuleList([
            nn.ConvTranspose1d(base_channels // (2 ** i), base_channels // (2 ** (i + 1)), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes))])
        self.source_downs, self.source_resblocks = nn.ModuleList(), nn.ModuleList()
        downsample_cum_rates = np.cumprod([1] + list(upsample_rates[::-1][:-1]))
        for i, (u, k, d) in enumerate(zip(downsample_cum_rates[::-1], source_resblock_kernel_sizes,
                                          source_resblock_dilation_sizes)):
            ch = base_channels // (2 ** (i + 1))
            if u == 1:
                self.source_downs.append(nn.Conv1d(n_fft + 2, ch, 1, 1))
            else:
                self.source_downs.append(nn.Conv1d(n_fft + 2, ch, int(u) * 2, int(u), padding=int(u) // 2))
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = base_channels // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock(ch, k, d))
        self.conv_post = nn.Conv1d(ch, n_fft + 2, 7, 1, padding=3)
        self.reflection_pad = nn.ReflectionPad1d((1, 0))
        self.stft_window = torch.hann_window(n_fft, periodic=True)  # scipy get_window("hann", fftbins=True)
        self.f0_predictor = ConvRNNF0Predictor(cond_channels=base_channels)
        n_trim = SR // 50
        self.trim_fade = torch.zeros(2 * n_trim)
        self.trim_fade[n_trim:] = (torch.cos(torch.linspace(torch.pi, 0, n_trim)) + 1) / 2

    def apply_weight_norm(self):
        """Upstream's weight-normed layers (after any weights are in place:
        weight_norm derives g and v from the current weight)."""
        for m in [self.conv_pre, self.conv_post, *self.ups]:
            weight_norm(m)
        for rb in [*self.resblocks, *self.source_resblocks]:
            for c in [*rb.convs1, *rb.convs2]:
                weight_norm(c)
        for m in self.f0_predictor.condnet:
            if isinstance(m, nn.Conv1d):
                weight_norm(m)

    def _stft(self, x):
        spec = torch.stft(x, self.istft_params["n_fft"], self.istft_params["hop_len"], self.istft_params["n_fft"],
                          window=self.stft_window.to(x.device), return_complex=True)
        spec = torch.view_as_real(spec)
        return spec[..., 0], spec[..., 1]

    def _istft(self, magnitude, phase):
        magnitude = torch.clip(magnitude, max=1e2)
        real = magnitude * torch.cos(phase)
        img = magnitude * torch.sin(phase)
        return torch.istft(torch.complex(real, img), self.istft_params["n_fft"], self.istft_params["hop_len"],
                           self.istft_params["n_fft"], window=self.stft_window.to(magnitude.device))

    def decode(self, x, s):
        s_stft_real, s_stft_imag = self._stft(s.squeeze(1))
        s_stft = torch.cat([s_stft_real, s_stft_imag], dim=1)
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = F.leaky_relu(x, self.lrelu_slope)
            x = self.ups[i](x)
            if i == self.num_upsamples - 1:
                x = self.reflection_pad(x)
            si = self.source_downs[i](s_stft)
            si = self.source_resblocks[i](si)
            x = x + si
            xs = None
            for j in range(self.num_kernels):
                if xs is None:
                    xs = self.resblocks[i * self.num_kernels + j](x)
                else:
                    xs += self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = F.leaky_relu(x)
        x = self.conv_post(x)
        nh = self.istft_params["n_fft"] // 2 + 1
        magnitude = torch.exp(x[:, :nh, :])
        phase = torch.sin(x[:, nh:, :])
        x = self._istft(magnitude, phase)
        return torch.clamp(x, -self.audio_limit, self.audio_limit)

    @torch.inference_mode()
    def inference(self, speech_feat, cache_source=torch.zeros(1, 1, 0)):
        f0 = self.f0_predictor(speech_feat)
        s = self.f0_upsamp(f0[:, None]).transpose(1, 2)
        s, _, _ = self.m_source(s)
        s = s.transpose(1, 2)
        if cache_source.shape[2] != 0:
            s[:, :, :cache_source.shape[2]] = cache_source
        return self.decode(x=speech_feat, s=s), s

    @torch.inference_mode()
    def hift_inference_with_fade(self, mel):
        """S3Token2Wav: mel2wav.inference, then the trim fade on the first 40 ms."""
        wav, _ = self.inference(mel, torch.zeros(1, 1, 0))
        wav[:, :len(self.trim_fade)] *= self.trim_fade
        return wav


def main():
    global DETERMINISTIC
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--weights")
    ap.add_argument("--check")
    a = ap.parse_args()
    rc.set_threads(a.threads)
    torch.manual_seed(0)
    model = HiFTGenerator().eval()
    out = {"model": "hift", "seconds": a.seconds, **rc.torch_info()}
    if a.weights:
        missing, unexpected = model.load_state_dict(rc.read_safetensors(a.weights), strict=False)
        out["missing"], out["unexpected"] = list(missing), list(unexpected)
    model.apply_weight_norm()
    if a.check:
        DETERMINISTIC = True
        dump = rc.read_safetensors(a.check)
        y = model.hift_inference_with_fade(dump["mel"])
        out["check_rel_l2"], out["check_max_abs"] = rc.rel_l2(y, dump["audio"])
        out["check_samples"] = [y.shape[-1], dump["audio"].shape[-1]]
        rc.emit(out)
        return
    mel = torch.randn(1, 80, int(round(a.seconds * SR)) // 480) * 2 - 5
    out["samples"] = mel.shape[-1] * 480
    out["audio_s"] = out["samples"] / SR
    warm = mel[..., :min(mel.shape[-1], 100)]
    out["ms"] = rc.time_calls(lambda: model.hift_inference_with_fade(mel), a.reps, a.warmup,
                              lambda: model.hift_inference_with_fade(warm))
    out["peak_rss_kb"] = rc.peak_rss_kb()
    rc.emit(out)


if __name__ == "__main__":
    main()
