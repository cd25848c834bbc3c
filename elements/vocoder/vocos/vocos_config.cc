// Vocos configuration: the fixture "config" JSON, the Lightning-style
// config.yaml of the published checkpoints, and what the tensor shapes say.
//
// Precedence: an explicit config (checkpoint metadata "config", else a
// config.yaml) gives hop, padding, eps, features; every value the shapes also
// determine (mels, dim, intermediate, layers, n_fft) must agree with them, and
// a disagreement is an error naming the tensor. Without a config, everything
// is inferred from the shapes plus the defaults of the published models.
#include "elements/vocoder/vocos/vocos.h"

#include "gst-plugins/core/checkpoint.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <sstream>

namespace chatterbox {

VocosConfig VocosConfig::mel_24khz() { return VocosConfig{}; }

VocosConfig VocosConfig::s3gen(int dim, int intermediate_dim, int num_layers) {
  VocosConfig c;
  c.input_channels = 80;
  c.dim = dim;
  c.intermediate_dim = intermediate_dim;
  c.num_layers = num_layers;
  c.n_fft = 1920;
  c.hop_length = 480;
  c.win_length = 1920;
  c.padding = "same";
  c.mel = MelFormat::s3gen();
  c.mel_spectrogram_features = false;
  return c;
}

int64_t VocosConfig::trim_samples() const {
  return padding == "same" ? (win_length - hop_length) / 2 : n_fft / 2;
}

int64_t VocosConfig::output_samples(int64_t frames) const {
  if (frames <= 0) return 0;
  // Overlap-add length minus the trim at both ends.
  int64_t n = (frames - 1) * hop_length + n_fft - 2 * trim_samples();
  return n > 0 ? n : 0;
}

int64_t VocosConfig::exact_lookahead_frames() const {
  // Sample u of the untrimmed overlap-add depends on frames t <= u / hop only.
  // After N frames, backbone frames t <= N-1-R are final (R =
  // receptive_frames()), so samples u < (N-R)*hop are. Emitting what an
  // utterance k frames shorter would give ends at untrimmed sample
  // (N-k-1)*hop + n_fft - trim; that is final iff
  // k >= R - 1 + ceil((n_fft - trim) / hop).
  const int64_t tail = n_fft - trim_samples();
  return receptive_frames() - 1 + (tail + hop_length - 1) / hop_length;
}

void VocosConfig::validate() const {
  auto bad = [](const std::string& what) { throw ModelError("invalid Vocos configuration: " + what); };
  if (input_channels <= 0 || dim <= 0 || intermediate_dim <= 0 || num_layers < 0)
    bad("input_channels, dim, intermediate_dim must be positive and num_layers >= 0");
  if (n_fft <= 0 || n_fft % 2 != 0) bad("n_fft must be a positive even number (got " + std::to_string(n_fft) + ")");
  if (hop_length <= 0 || hop_length > n_fft)
    bad("hop_length must be in [1, n_fft] (got " + std::to_string(hop_length) + ")");
  if (win_length != n_fft)
    bad("ISTFTHead uses win_length = n_fft; got win_length " + std::to_string(win_length) + " and n_fft " +
        std::to_string(n_fft));
  if (padding != "same" && padding != "center") bad("padding must be \"same\" or \"center\" (got \"" + padding + "\")");
  if (!(layer_norm_eps > 0)) bad("layer_norm_eps must be positive");
  if (!(mag_clip_max > 0)) bad("mag_clip_max must be positive");
  if (mel.n_mels != input_channels)
    bad("the mel format has n_mels " + std::to_string(mel.n_mels) + " but the backbone takes " +
        std::to_string(input_channels) + " input channels");
  if (mel.hop_length != hop_length)
    bad("the mel format has hop " + std::to_string(mel.hop_length) + " but the iSTFT head hops " +
        std::to_string(hop_length) + " samples per frame");
  if (mel.rate != sample_rate)
    bad("the mel format has rate " + std::to_string(mel.rate) + " but the model's sample_rate is " +
        std::to_string(sample_rate));
}

nlohmann::json VocosConfig::to_json() const {
  nlohmann::json j = {{"input_channels", input_channels},
                      {"n_mels", input_channels},
                      {"dim", dim},
                      {"intermediate_dim", intermediate_dim},
                      {"num_layers", num_layers},
                      {"n_fft", n_fft},
                      {"hop_length", hop_length},
                      {"win_length", win_length},
                      {"padding", padding},
                      {"sample_rate", sample_rate},
                      {"layer_norm_eps", layer_norm_eps},
                      {"mag_clip_max", mag_clip_max},
                      {"adanorm_num_embeddings", nullptr}};
  if (mel_spectrogram_features)
    j["feature_extractor"] = {{"class", "vocos.feature_extractors.MelSpectrogramFeatures"},
                              {"sample_rate", mel.rate},
                              {"n_fft", mel.n_fft},
                              {"hop_length", mel.hop_length},
                              {"n_mels", mel.n_mels},
                              {"padding", mel.padding}};
  else
    j["feature_extractor"] = nullptr;
  j["mel"] = mel.to_json();
  return j;
}

std::string VocosConfig::to_string() const {
  std::ostringstream os;
  os << "Vocos(mels=" << input_channels << " dim=" << dim << " intermediate=" << intermediate_dim
     << " layers=" << num_layers << " n_fft=" << n_fft << " hop=" << hop_length << " padding=" << padding
     << " rate=" << sample_rate << " eps=" << layer_norm_eps << "; features: " << mel.to_string() << ")";
  return os.str();
}

// --- config.yaml ---------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

nlohmann::json vocos_yaml_to_json(const std::string& yaml_path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml_path);
  } catch (const YAML::Exception& e) {
    throw ModelError("Vocos config '" + yaml_path + "' is not readable YAML: " + e.what());
  }
  auto section = [&](const char* name, bool required) -> YAML::Node {
    YAML::Node n = root[name];
    if (!n && required)
      throw ModelError("Vocos config '" + yaml_path + "' has no '" + name +
                       "' section (expected the charactr/vocos config.yaml layout: feature_extractor, backbone, head)");
    return n;
  };
  auto class_of = [&](const YAML::Node& n, const char* name) {
    if (!n["class_path"]) throw ModelError("Vocos config '" + yaml_path + "': section '" + name + "' has no class_path");
    return n["class_path"].as<std::string>();
  };
  auto arg = [&](const YAML::Node& n, const char* section_name, const char* key) -> YAML::Node {
    YAML::Node v = n["init_args"] ? n["init_args"][key] : YAML::Node();
    if (!v)
      throw ModelError("Vocos config '" + yaml_path + "': " + section_name + ".init_args." + key +
                       " is missing (the class has no default for it)");
    return v;
  };
  auto arg_or = [&](const YAML::Node& n, const char* key, auto fallback) {
    YAML::Node args = n["init_args"];
    if (args && args[key] && !args[key].IsNull()) return args[key].template as<decltype(fallback)>();
    return fallback;
  };

  nlohmann::json j;
  try {
    // The training config nests the three sections under model.init_args.
    // (Inside the try: on a document that is a scalar or a list, operator[]
    // throws YAML::BadSubscript -- found by fuzz/fuzz_vocos_yaml.)
    if (root["model"] && root["model"]["init_args"]) root = root["model"]["init_args"];
    YAML::Node bb = section("backbone", true);
    std::string bb_class = class_of(bb, "backbone");
    if (!ends_with(bb_class, "VocosBackbone"))
      throw ModelError("Vocos config '" + yaml_path + "': backbone class '" + bb_class +
                       "' is not supported (only vocos.models.VocosBackbone, the ConvNeXt backbone)");
    j["input_channels"] = arg(bb, "backbone", "input_channels").as<int>();
    j["dim"] = arg(bb, "backbone", "dim").as<int>();
    j["intermediate_dim"] = arg(bb, "backbone", "intermediate_dim").as<int>();
    j["num_layers"] = arg(bb, "backbone", "num_layers").as<int>();
    if (bb["init_args"] && bb["init_args"]["adanorm_num_embeddings"] &&
        !bb["init_args"]["adanorm_num_embeddings"].IsNull())
      j["adanorm_num_embeddings"] = bb["init_args"]["adanorm_num_embeddings"].as<int>();

    YAML::Node head = section("head", true);
    std::string head_class = class_of(head, "head");
    if (!ends_with(head_class, "ISTFTHead"))
      throw ModelError("Vocos config '" + yaml_path + "': head class '" + head_class +
                       "' is not supported (only vocos.heads.ISTFTHead)");
    int head_dim = arg(head, "head", "dim").as<int>();
    if (head_dim != j["dim"].get<int>())
      throw ModelError("Vocos config '" + yaml_path + "': head.init_args.dim " + std::to_string(head_dim) +
                       " differs from backbone.init_args.dim " + std::to_string(j["dim"].get<int>()));
    j["n_fft"] = arg(head, "head", "n_fft").as<int>();
    j["win_length"] = j["n_fft"];
    j["hop_length"] = arg(head, "head", "hop_length").as<int>();
    j["padding"] = arg_or(head, "padding", std::string("same"));  // ISTFTHead's default

    YAML::Node fe = section("feature_extractor", false);
    if (fe) {
      std::string fe_class = class_of(fe, "feature_extractor");
      nlohmann::json f = {{"class", fe_class}};
      if (ends_with(fe_class, "MelSpectrogramFeatures")) {
        // MelSpectrogramFeatures' own defaults.
        f["sample_rate"] = arg_or(fe, "sample_rate", 24000);
        f["n_fft"] = arg_or(fe, "n_fft", 1024);
        f["hop_length"] = arg_or(fe, "hop_length", 256);
        f["n_mels"] = arg_or(fe, "n_mels", 100);
        f["padding"] = arg_or(fe, "padding", std::string("center"));
        j["sample_rate"] = f["sample_rate"];
      }
      j["feature_extractor"] = f;
    } else {
      j["feature_extractor"] = nullptr;
    }
    if (root["sample_rate"]) j["sample_rate"] = root["sample_rate"].as<int>();
  } catch (const YAML::Exception& e) {
    throw ModelError("Vocos config '" + yaml_path + "': unexpected value: " + e.what());
  }
  return j;
}

// --- reconciling config and shapes ------------------------------------------------

namespace {

struct Shapes {
  const Checkpoint& ck;
  bool has(const std::string& k) const { return ck.has(k); }
  std::vector<int64_t> of(const std::string& k) const { return ck.get_raw(k).sizes().vec(); }
};

[[noreturn]] void disagree(const Checkpoint& ck, const std::string& source, const std::string& key, int64_t cfg_value,
                           const std::string& tensor, const std::vector<int64_t>& shape) {
  throw ModelError("Vocos checkpoint '" + ck.path() + "': " + source + " says " + key + "=" +
                   std::to_string(cfg_value) + " but tensor '" + tensor + "' has shape " + shape_str(shape) +
                   "; the config does not belong to these weights");
}

}  // namespace

namespace {

VocosConfig resolve_unchecked(const Checkpoint& ck, const std::string& config_yaml_path) {
  nlohmann::json j = nlohmann::json::object();
  std::string source = "shapes";
  if (ck.has_metadata("config")) {
    j = ck.config();
    source = "the metadata config";
  } else if (!config_yaml_path.empty()) {
    j = vocos_yaml_to_json(config_yaml_path);
    source = "'" + config_yaml_path + "'";
  }
  const bool have_cfg = source != "shapes";
  auto has_key = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  auto cfg_int = [&](const char* k, int fallback) { return has_key(k) ? j[k].get<int>() : fallback; };

  if (has_key("adanorm_num_embeddings"))
    throw ModelError("Vocos checkpoint '" + ck.path() +
                     "': adaptive LayerNorm (adanorm_num_embeddings) models (EnCodec-conditioned Vocos) are not "
                     "supported; use a mel Vocos");

  // Shapes.
  const std::string embed = "backbone.embed.weight";
  if (!ck.has(embed))
    throw ModelError("Vocos checkpoint '" + ck.path() + "': tensor '" + embed +
                     "' is missing; this is not a Vocos (VocosBackbone) checkpoint");
  Shapes s{ck};
  auto es = s.of(embed);
  if (es.size() != 3 || es[2] != 7)
    throw ModelError("Vocos checkpoint '" + ck.path() + "': tensor '" + embed + "' has shape " + shape_str(es) +
                     ", expected [dim, n_mels, 7] (a kernel-7 Conv1d)");
  const std::string head_w = "head.out.weight";
  if (!ck.has(head_w))
    throw ModelError("Vocos checkpoint '" + ck.path() + "': tensor '" + head_w +
                     "' is missing; only the ISTFTHead is supported");
  auto hs = s.of(head_w);
  if (hs.size() != 2 || hs[1] != es[0] || hs[0] < 4)
    throw ModelError("Vocos checkpoint '" + ck.path() + "': tensor '" + head_w + "' has shape " + shape_str(hs) +
                     ", expected [n_fft+2, " + std::to_string(es[0]) + "]");
  int layers = 0;
  while (ck.has("backbone.convnext." + std::to_string(layers) + ".dwconv.weight")) ++layers;

  VocosConfig c;
  c.dim = static_cast<int>(es[0]);
  c.input_channels = static_cast<int>(es[1]);
  c.num_layers = layers;
  c.n_fft = static_cast<int>(hs[0] - 2);
  c.win_length = c.n_fft;
  if (layers > 0) {
    const std::string pw1 = "backbone.convnext.0.pwconv1.weight";
    if (!ck.has(pw1))
      throw ModelError("Vocos checkpoint '" + ck.path() + "': tensor '" + pw1 + "' is missing");
    auto ps = s.of(pw1);
    if (ps.size() != 2)
      throw ModelError("Vocos checkpoint '" + ck.path() + "': tensor '" + pw1 + "' has shape " + shape_str(ps) +
                       ", expected [intermediate_dim, dim]");
    c.intermediate_dim = static_cast<int>(ps[0]);
  } else {
    c.intermediate_dim = cfg_int("intermediate_dim", c.intermediate_dim);
  }

  if (have_cfg) {
    int in = has_key("input_channels") ? j["input_channels"].get<int>() : cfg_int("n_mels", c.input_channels);
    if (in != c.input_channels) disagree(ck, source, "input_channels", in, embed, es);
    if (cfg_int("dim", c.dim) != c.dim) disagree(ck, source, "dim", cfg_int("dim", c.dim), embed, es);
    if (layers > 0 && cfg_int("intermediate_dim", c.intermediate_dim) != c.intermediate_dim)
      disagree(ck, source, "intermediate_dim", cfg_int("intermediate_dim", 0), "backbone.convnext.0.pwconv1.weight",
               s.of("backbone.convnext.0.pwconv1.weight"));
    if (cfg_int("num_layers", c.num_layers) != c.num_layers) {
      std::string next = "backbone.convnext." + std::to_string(layers) + ".dwconv.weight";
      throw ModelError("Vocos checkpoint '" + ck.path() + "': " + source + " says num_layers=" +
                       std::to_string(cfg_int("num_layers", 0)) + " but the checkpoint has " + std::to_string(layers) +
                       " ConvNeXt blocks (tensor '" + next + "' is missing)");
    }
    if (cfg_int("n_fft", c.n_fft) != c.n_fft) disagree(ck, source, "n_fft", cfg_int("n_fft", 0), head_w, hs);
    c.win_length = cfg_int("win_length", c.n_fft);
  }

  // Feature extractor: the config section, else the checkpoint buffers.
  const std::string fb_key = "feature_extractor.mel_spec.mel_scale.fb";
  const std::string fw_key = "feature_extractor.mel_spec.spectrogram.window";
  const bool fe_buffers = ck.has(fb_key);
  nlohmann::json fe;  // null: none
  if (j.contains("feature_extractor")) {
    fe = j["feature_extractor"];
    if (!fe.is_null()) {
      std::string cls = fe.value("class", fe.value("class_path", std::string()));
      if (cls.find("MelSpectrogramFeatures") == std::string::npos)
        throw ModelError("Vocos checkpoint '" + ck.path() + "': feature extractor '" + cls +
                         "' is not supported (only vocos.feature_extractors.MelSpectrogramFeatures, i.e. mel input)");
    }
  } else if (fe_buffers) {
    fe = nlohmann::json::object();  // defaults + buffer shapes below
  }

  // Hop and padding: config, else feature extractor, else the published
  // models' conventions (S3Gen: 480/"same"; MelSpectrogramFeatures: "center").
  int default_hop = c.n_fft == 1920 ? 480 : c.n_fft / 4;
  std::string default_padding = fe.is_null() ? "same" : "center";
  if (!fe.is_null()) {
    if (fe.contains("hop_length")) default_hop = fe["hop_length"].get<int>();
    if (fe.contains("padding")) default_padding = fe["padding"].get<std::string>();
  }
  c.hop_length = cfg_int("hop_length", default_hop);
  c.padding = has_key("padding") ? j["padding"].get<std::string>() : default_padding;
  c.sample_rate = cfg_int("sample_rate", fe.is_object() && fe.contains("sample_rate") ? fe["sample_rate"].get<int>()
                                                                                       : 24000);
  if (has_key("layer_norm_eps")) c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  if (has_key("mag_clip_max")) c.mag_clip_max = j["mag_clip_max"].get<double>();

  // The feature layout.
  if (!fe.is_null()) {
    MelFormat m = MelFormat::vocos();
    m.rate = fe.value("sample_rate", c.sample_rate);
    m.n_mels = fe.value("n_mels", c.input_channels);
    m.hop_length = fe.value("hop_length", c.hop_length);
    int fe_nfft = fe.value("n_fft", fe_buffers && ck.has(fw_key) ? static_cast<int>(s.of(fw_key)[0]) : 1024);
    m.n_fft = fe_nfft;
    m.win_length = fe_nfft;
    m.f_max = m.rate / 2.0;  // torchaudio MelSpectrogram: f_max None -> sr / 2
    m.padding = fe.value("padding", std::string("center"));
    auto fe_disagree = [&](const std::string& what) {
      throw ModelError("Vocos checkpoint '" + ck.path() + "': the MelSpectrogramFeatures front end does not match "
                       "the model: " + what);
    };
    if (m.n_mels != c.input_channels)
      fe_disagree("it makes " + std::to_string(m.n_mels) + " mels, the backbone takes " +
                  std::to_string(c.input_channels) + " channels");
    if (m.hop_length != c.hop_length)
      fe_disagree("its hop is " + std::to_string(m.hop_length) + ", the head's is " + std::to_string(c.hop_length));
    if (m.padding != c.padding)
      fe_disagree("its padding is \"" + m.padding + "\", the head's is \"" + c.padding + "\"");
    if (m.rate != c.sample_rate)
      fe_disagree("its sample rate is " + std::to_string(m.rate) + ", the model's is " + std::to_string(c.sample_rate));
    if (fe_buffers) {
      auto fbs = s.of(fb_key);
      if (fbs.size() != 2 || fbs[0] != m.n_fft / 2 + 1 || fbs[1] != m.n_mels)
        fe_disagree("tensor '" + fb_key + "' has shape " + shape_str(fbs) + ", expected [" +
                    std::to_string(m.n_fft / 2 + 1) + ", " + std::to_string(m.n_mels) + "]");
      if (ck.has(fw_key) && s.of(fw_key) != std::vector<int64_t>{m.n_fft})
        fe_disagree("tensor '" + fw_key + "' has shape " + shape_str(s.of(fw_key)) + ", expected [" +
                    std::to_string(m.n_fft) + "]");
    }
    c.mel = m;
    c.mel_spectrogram_features = true;
  } else if (c.input_channels == 80 && c.hop_length == 480 && c.n_fft == 1920) {
    c.mel = MelFormat::s3gen();
    c.mel.rate = c.sample_rate;
    c.mel_spectrogram_features = false;
  } else {
    // No front end recorded: assume torchaudio-style log-mels of the head's
    // geometry (what MelSpectrogramFeatures would compute).
    MelFormat m = MelFormat::vocos();
    m.rate = c.sample_rate;
    m.n_mels = c.input_channels;
    m.hop_length = c.hop_length;
    m.n_fft = c.n_fft;
    m.win_length = c.n_fft;
    m.f_max = m.rate / 2.0;
    m.padding = c.padding;
    c.mel = m;
    c.mel_spectrogram_features = false;
  }
  // Our own trained models state their features outright.
  if (has_key("mel")) {
    if (!j["mel"].is_object())
      throw ModelError("Vocos checkpoint '" + ck.path() + "': config \"mel\" must be an object of MelFormat fields");
    c.mel = MelFormat::from_json(j["mel"], c.mel);
  }
  try {
    c.validate();
  } catch (const ModelError& e) {
    throw ModelError("Vocos checkpoint '" + ck.path() + "' (config from " + source + "): " + e.what());
  }
  return c;
}

}  // namespace

VocosConfig resolve_vocos_config(const Checkpoint& ck, const std::string& config_yaml_path) {
  // A config value of the wrong JSON type (a string where a number belongs,
  // a number where an object belongs) surfaces as a nlohmann exception deep
  // in the reconciliation; report it as the ModelError every loader throws
  // (found by fuzz/fuzz_vocos_config).
  try {
    return resolve_unchecked(ck, config_yaml_path);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError("Vocos checkpoint '" + ck.path() + "': a config value has the wrong type (" + e.what() + ")");
  }
}

}  // namespace chatterbox
