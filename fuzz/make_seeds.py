#!/usr/bin/env python3
"""Writes small seed corpora for the fuzz harnesses into OUT/<harness>/.

Seeds are derived from the shared fixtures (FIXTURES, default ../shared/fixtures)
but kept small: a fixture safetensors is rewritten with a handful of its
smallest tensors plus its metadata (so its "config" JSON survives), and torch
zip seeds are built here the way torch.save lays them out (pickle protocol 2,
stored zip entries) -- big inputs only slow libFuzzer down. Nothing here needs
torch or numpy. Usage: make_seeds.py OUT [FIXTURES]
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

out = sys.argv[1]
fixtures = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures")


def put(harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return header, raw[8 + n:]


def write_safetensors(tensors, metadata):
    """tensors: {name: (dtype, shape, bytes)}"""
    header, blob = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


# --- safetensors seeds and config seeds from the fixtures ---------------------
configs = {}  # fixture -> metadata config JSON text
for model in sorted(os.listdir(fixtures)):
    mdir = os.path.join(fixtures, model)
    if not os.path.isdir(mdir):
        continue
    for fn in sorted(os.listdir(mdir)):
        if not fn.endswith(".safetensors"):
            continue
        header, blob = read_safetensors(os.path.join(mdir, fn))
        meta = header.pop("__metadata__", {})
        small = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])[:6]
        tensors = {k: (v["dtype"], v["shape"], blob[v["data_offsets"][0]:v["data_offsets"][1]])
                   for k, v in small if v["data_offsets"][1] - v["data_offsets"][0] <= 4096}
        put("safetensors", f"{model}_{fn}", write_safetensors(tensors, meta))
        if "config" in meta:
            configs[f"{model}_{fn}"] = meta["config"]

f32 = lambda vals: struct.pack(f"<{len(vals)}f", *vals)
put("safetensors", "weight_norm_legacy.safetensors", write_safetensors({
    "conv.weight_g": ("F32", [2, 1, 1], f32([1.0, 2.0])),
    "conv.weight_v": ("F32", [2, 1, 3], f32([1, 2, 3, 4, 5, 6]))}, {"config": "{}"}))
put("safetensors", "weight_norm_parametrized.safetensors", write_safetensors({
    "conv.parametrizations.weight.original0": ("F32", [2, 1, 1], f32([1.0, 2.0])),
    "conv.parametrizations.weight.original1": ("F32", [2, 1, 3], f32([1, 2, 3, 4, 5, 6]))}, {}))
put("safetensors", "dtypes.safetensors", write_safetensors({
    "a": ("F16", [2], b"\x00\x3c\x00\x40"), "b": ("BF16", [1], b"\x80\x3f"), "c": ("I64", [1], struct.pack("<q", 7)),
    "d": ("BOOL", [2], b"\x01\x00"), "e": ("F64", [0], b""), "f": ("U8", [1, 1], b"\x05")}, {"k": "v"}))

for name, text in configs.items():
    target = {"vocos": "vocos_config", "hift": "hift_config", "s3gen": "s3gen_config"}.get(name.split("_")[0])
    if target == "vocos_config":
        put(target, name + ".json", b"\x00" + text.encode())
        put(target, name + "_fe.json", b"\x01" + text.encode())
    elif target:
        put(target, name + ".json", text)
for t in ("hift_config", "s3gen_config"):
    put(t, "empty.json", "{}")
put("vocos_config", "min.json", b"\x00{\"dim\": 16, \"n_fft\": 64, \"hop_length\": 16, \"padding\": \"same\"}")

# --- Vocos config.yaml (the charactr/vocos-mel-24khz layout) --------------------
put("vocos_yaml", "mel_24khz.yaml", """feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args:
    sample_rate: 24000
    n_fft: 1024
    hop_length: 256
    n_mels: 100
    padding: center
backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: 100
    dim: 16
    intermediate_dim: 48
    num_layers: 1
head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: 16
    n_fft: 64
    hop_length: 16
    padding: same
""")
put("vocos_yaml", "nested.yaml", """model:
  init_args:
    sample_rate: 24000
    backbone: {class_path: vocos.models.VocosBackbone, init_args: {input_channels: 100, dim: 16, intermediate_dim: 48, num_layers: 1}}
    head: {class_path: vocos.heads.ISTFTHead, init_args: {dim: 16, n_fft: 64, hop_length: 16}}
""")

# --- tokenizer ----------------------------------------------------------------------
tok = os.path.join(fixtures, "t3", "tokenizer_tiny.json")
if os.path.exists(tok):
    put("tokenizer", "tokenizer_tiny.json", open(tok, "rb").read())

# --- caps -----------------------------------------------------------------------------
mel = ("audio/x-mel-spectrogram, format=(string)F32LE, layout=(string)frame-major, log=(string)ln, rate=(int){rate}, "
       "n-mels=(int){n}, hop-length=(int){hop}, n-fft=(int){fft}, win-length=(int){fft}, f-min=(double)0, "
       "f-max=(double){fmax}, padding=(string){pad}, power=(int)1, mel-scale=(string)slaney, norm=(string)slaney, "
       "log-floor=(double)1e-05, mag-eps=(double){eps}")
put("caps", "s3gen.txt", mel.format(rate=24000, n=80, hop=480, fft=1920, fmax=8000.0, pad="same", eps=1e-9))
put("caps", "vocos.txt", mel.format(rate=24000, n=100, hop=256, fft=1024, fmax=12000.0, pad="center", eps=0))
put("caps", "partial.txt", "audio/x-mel-spectrogram, rate=(int){ 16000, 24000 }, n-mels=(int)[ 1, 200 ]")
put("caps", "tokens.txt", "audio/x-speech-tokens, format=(string)S32LE, codebook=(string)s3-v2-25hz, vocab-size=(int)6561, rate=(int)25")

# --- torch zip: what torch.save writes, built with a stand-in torch module ---------
torch = types.ModuleType("torch")
tutils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, tutils
for st in ("FloatStorage", "LongStorage", "HalfStorage"):
    setattr(torch, st, type(st, (), {"__module__": "torch"}))


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
tutils._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Tensor:
    def __init__(self, storage, shape, offset=0):
        self.storage, self.shape, self.offset = storage, shape, offset

    def __reduce__(self):
        stride, acc = [], 1
        for s in reversed(self.shape):
            stride.insert(0, acc)
            acc *= s
        return (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.shape), tuple(stride), False,
                                     collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def torch_zip(obj, storages, folder="archive", zero_crc=True):
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{folder}/data.pkl", buf.getvalue())
        for key, data in storages.items():
            z.writestr(f"{folder}/data/{key}", data)
        z.writestr(f"{folder}/version", "3\n")
    data = bytearray(zbuf.getvalue())
    if zero_crc:
        # CRC 0 = "not recorded" to the reader: lets mutations of the pickle
        # reach the unpickler instead of stopping at the checksum.
        for sig, off in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
            i = data.find(sig)
            while i >= 0:
                data[i + off:i + off + 4] = b"\0\0\0\0"
                i = data.find(sig, i + 4)
    return bytes(data)


s0 = Storage(torch.FloatStorage, "0", 6)
s1 = Storage(torch.LongStorage, "1", 3)
sd = collections.OrderedDict([("w", Tensor(s0, [2, 3])), ("b", Tensor(s0, [2], offset=4)), ("ids", Tensor(s1, [1, 3]))])
stor = {"0": f32([1, 2, 3, 4, 5, 6]), "1": struct.pack("<3q", 1, 2, 3)}
put("torch_zip", "state_dict.pt", torch_zip(sd, stor))
put("torch_zip", "state_dict_crc.pt", torch_zip(sd, stor, zero_crc=False))
put("torch_zip", "nested.pt", torch_zip({"t3": {"speaker_emb": Tensor(s0, [1, 6])}, "gen": {"tok": Tensor(s1, [3]), "none": None}},
                                        stor, folder="conds"))
# (t3/conds_tiny.pt, 167 KB, is past fuzz.sh's -max_len and would only be
# fed truncated; the archives above have its structure: nested dicts under a
# non-"archive" folder, float and int64 storages.)
