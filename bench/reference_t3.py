#!/usr/bin/python3
"""Upstream Chatterbox's T3 decode loop timed in PyTorch, on the same weights
as bench_t3 (the comparison rows of bench/run_t3.py).

  reference_t3.py --make-weights FAMILY OUT.safetensors
      builds upstream's T3 for FAMILY (original | turbo | nano) with torch's
      default initialisation (seed 1234) and saves its state_dict: a
      real-layout checkpoint that `bench_t3 --weights OUT` loads.
  reference_t3.py --time FAMILY WEIGHTS [--threads N] [--tokens N]
                  [--text-tokens N] [--reps N]
      loads WEIGHTS into upstream's T3 and runs T3.inference (original: CFG
      pair, as ChatterboxTTS.generate calls it) or T3.inference_turbo
      (Turbo/Nano) for a fixed number of tokens; prints one JSON line with
      the prefill and the median per-token time (time between successive
      backbone calls: one forward plus the sampling, as bench_t3 times).

Upstream code is read from the fetched repository (--upstream, default the
mirror /work/.mirror/resemble-ai+chatterbox/repo, extracted with git
archive); what Debian lacks (transformers, einops) comes from bench/refshim.
Runs on Debian's python3-torch (/usr/bin/python3).
"""
import argparse, json, os, subprocess, sys, tempfile, time, types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "refshim"))
sys.path.insert(0, HERE)
import torch  # noqa: E402
from reference_common import read_safetensors, write_safetensors, set_threads, peak_rss_kb  # noqa: E402
import torch2_compat  # noqa: E402  (refshim: torch 2 calls the Perceiver makes)

torch2_compat.install()


def import_upstream(upstream):
    """chatterbox.models.t3 from the repository, without the package's
    __init__ (which imports the whole TTS stack)."""
    src = upstream
    if not os.path.isdir(os.path.join(src, "src", "chatterbox")):
        dst = os.path.join(tempfile.gettempdir(), "chatterbox_src_5de7a54")
        if not os.path.isdir(os.path.join(dst, "src")):
            os.makedirs(dst, exist_ok=True)
            tar = subprocess.run(["git", "--git-dir", upstream, "archive", "HEAD", "src"], check=True,
                                 capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", dst], input=tar, check=True)
        src = dst
    root = os.path.join(src, "src", "chatterbox")
    for name, path in [("chatterbox", root), ("chatterbox.models", os.path.join(root, "models"))]:
        m = types.ModuleType(name)
        m.__path__ = [path]
        sys.modules[name] = m
    import chatterbox.models.t3 as t3mod
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    return t3mod.T3, T3Config, T3Cond


def config(T3Config, family):
    if family == "original":
        return T3Config.english_only()
    hp = T3Config(text_tokens_dict_size=50276)  # as tts_turbo.py builds it
    hp.llama_config_name = "GPT2_small" if family == "nano" else "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-weights", nargs=2, metavar=("FAMILY", "OUT"))
    ap.add_argument("--time", nargs=2, metavar=("FAMILY", "WEIGHTS"))
    ap.add_argument("--upstream", default="/work/.mirror/resemble-ai+chatterbox/repo")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--text-tokens", type=int, default=60)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    T3, T3Config, T3Cond = import_upstream(a.upstream)
    if a.make_weights:
        family, out = a.make_weights
        torch.manual_seed(1234)
        model = T3(config(T3Config, family))
        write_safetensors(out, model.state_dict())
        print(json.dumps({"family": family, "file": out, "tensors": len(model.state_dict())}))
        return
    family, weights = a.time
    set_threads(a.threads)
    hp = config(T3Config, family)
    t0 = time.perf_counter()
    model = T3(hp)
    model.load_state_dict(read_safetensors(weights))
    model.eval()
    load_ms = 1000 * (time.perf_counter() - t0)
    g = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, 6561, (1, hp.speech_cond_prompt_len), generator=g)
    spk = torch.randn(1, 256, generator=g)
    spk = spk / spk.norm()

    # Backbone call times: every call of the transformer records its start.
    starts = []
    backbone = type(model.tfmr)
    orig_forward = backbone.forward

    def timed(self, *args, **kw):
        starts.append(time.perf_counter())
        return orig_forward(self, *args, **kw)

    backbone.forward = timed
    prefill, steps, produced = [], [], 0
    for r in range(a.reps):
        torch.manual_seed(11 + r)
        starts.clear()
        cond = T3Cond(speaker_emb=spk, cond_prompt_speech_tokens=prompt,
                      emotion_adv=0.5 * torch.ones(1, 1, 1) if hp.emotion_adv else None)
        if family == "original":
            # bench_t3's text is a.text_tokens ids; T3Generator adds the two ends.
            text = torch.randint(1, hp.text_tokens_dict_size - 1, (1, a.text_tokens), generator=g)
            text = torch.cat([torch.tensor([[hp.start_text_token]]), text, torch.tensor([[hp.stop_text_token]])], 1)
            text = torch.cat([text, text], 0)  # the CFG pair, as ChatterboxTTS.generate
            t = time.perf_counter()
            out = model.inference(t3_cond=cond, text_tokens=text, max_new_tokens=a.tokens, temperature=0.8,
                                  cfg_weight=0.5, repetition_penalty=1.2, min_p=0.05, top_p=1.0)
        else:
            text = torch.randint(0, hp.text_tokens_dict_size, (1, a.text_tokens), generator=g)
            t = time.perf_counter()
            out = model.inference_turbo(cond, text, max_gen_len=a.tokens - 1)
        end = time.perf_counter()
        produced += out.numel()
        times = starts + [end]
        prefill.append(1000 * (times[1] - t))  # prefill forward + first sampling
        steps += [1000 * (times[i + 1] - times[i]) for i in range(1, len(times) - 1)]
    steps.sort()
    med = steps[len(steps) // 2] if steps else None
    print(json.dumps({"family": family, "threads": a.threads, "load_ms": load_ms, "prefill_ms": prefill,
                      "ms_per_token": med, "ms_per_token_all": steps, "tokens_per_run": produced // a.reps,
                      "torch": torch.__version__, "peak_rss_kb": peak_rss_kb()}))


if __name__ == "__main__":
    main()
