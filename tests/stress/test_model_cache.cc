// The shared model cache (gst-plugins/core/model_cache.h): one load per key,
// concurrent users wait for one load, weights freed with their last user;
// the model libraries run correctly with two threads on one set of weights;
// elements naming the same file share weights, different files do not, and
// going to NULL frees them.
//
// This suite links libchatterbox.so (not the static model libraries), so
// ModelCache::global() here is the very cache the plugin uses.
#define BOOST_TEST_MODULE model_cache
#include <boost/test/unit_test.hpp>

#include "elements/s3gen/flow/s3gen_flow.h"
#include "elements/t3/model/t3.h"
#include "elements/t3/model/text_frontend.h"
#include "elements/vocoder/hift/hift.h"
#include "elements/vocoder/vocos/vocos.h"
#include "gst-plugins/core/model_cache.h"
#include "tests/stress/stress_util.h"

#include <atomic>
#include <chrono>
#include <thread>

using chatterbox::ModelCache;
using namespace chatterbox::stress;

BOOST_GLOBAL_FIXTURE(GstInit);

namespace {

// Entries of the global cache whose key names `kind` (e.g. "vocos").
std::vector<ModelCache::Entry> live(const std::string& kind) {
  std::vector<ModelCache::Entry> out;
  for (const auto& e : ModelCache::global().entries())
    if (contains(e.key, "\n" + kind + "\n")) out.push_back(e);
  return out;
}

std::string temp_path(const std::string& name) { return Inputs::get().dir + "/" + name; }

}  // namespace

// --- the cache itself ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(one_load_per_key_and_freed_with_the_last_user) {
  ModelCache cache;
  int loads = 0;
  auto loader = [&] { ++loads; return std::make_shared<const int>(42); };
  std::weak_ptr<const int> watch;
  {
    auto a = cache.get<int>("k", loader);
    auto b = cache.get<int>("k", loader);
    auto c = cache.get<int>("other", loader);
    BOOST_TEST(a.get() == b.get());
    BOOST_TEST(a.get() != c.get());
    BOOST_TEST(loads == 2);
    BOOST_TEST(cache.entries().size() == 2u);
    watch = a;
  }
  BOOST_TEST(watch.expired());  // the cache holds no strong reference
  BOOST_TEST(cache.entries().empty());
  auto d = cache.get<int>("k", loader);
  BOOST_TEST(loads == 3);
  BOOST_TEST(cache.loads() == 3u);
}

BOOST_AUTO_TEST_CASE(a_failed_load_caches_nothing) {
  ModelCache cache;
  int calls = 0;
  auto failing = [&]() -> std::shared_ptr<const int> {
    ++calls;
    throw chatterbox::ModelError("broken file");
  };
  BOOST_CHECK_THROW(cache.get<int>("k", failing), chatterbox::ModelError);
  BOOST_CHECK_THROW(cache.get<int>("k", failing), chatterbox::ModelError);
  BOOST_TEST(calls == 2);
  auto ok = cache.get<int>("k", [] { return std::make_shared<const int>(1); });
  BOOST_TEST(*ok == 1);
}

BOOST_AUTO_TEST_CASE(concurrent_users_of_one_key_wait_for_one_load) {
  ModelCache cache;
  std::atomic<int> loads{0};
  std::vector<std::shared_ptr<const int>> got(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      got[t] = cache.get<int>("slow", [&] {
        ++loads;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return std::make_shared<const int>(7);
      });
    });
  for (auto& th : threads) th.join();
  BOOST_TEST(loads.load() == 1);
  for (const auto& g : got) BOOST_TEST(g.get() == got[0].get());
}

BOOST_AUTO_TEST_CASE(keys_follow_the_file_not_the_name) {
  const std::string f = temp_path("identity.bin"), alias = temp_path("identity-link.bin");
  std::ofstream(f) << "one";
  std::remove(alias.c_str());
  BOOST_REQUIRE(symlink(f.c_str(), alias.c_str()) == 0);
  const std::string k1 = ModelCache::make_key("vocos", {f});
  BOOST_TEST(ModelCache::make_key("vocos", {alias}) == k1);           // same file, other name
  BOOST_TEST(ModelCache::make_key("vocos", {f}, "cuda") != k1);       // other device
  BOOST_TEST(ModelCache::make_key("vocos", {f}, "cpu", "bf16") != k1);  // other weights option
  std::ofstream(f) << "three";                                         // replaced on disk
  BOOST_TEST(ModelCache::make_key("vocos", {f}) != k1);
  BOOST_TEST(contains(chatterbox::file_identity(temp_path("absent")), "missing"));
}

// --- the libraries share weights across threads ---------------------------------------

BOOST_AUTO_TEST_CASE(vocos_vocoders_on_one_model_in_two_threads) {
  const std::string path = fixture("vocos/tiny_s3gen_same.safetensors");
  auto m1 = chatterbox::VocosModel::load(path);
  auto m2 = chatterbox::VocosModel::load(path);
  BOOST_TEST(m1->weights_data() != m2->weights_data());  // two loads: two copies
  at::Tensor mel = chatterbox::Checkpoint::open(path).get("test.input_mel")[0].t().contiguous();  // [T, 80]
  auto stream = [&](chatterbox::VocosVocoder& v) {
    std::vector<at::Tensor> parts;
    for (int64_t t = 0; t < mel.size(0); t += 7) parts.push_back(v.feed(mel.narrow(0, t, std::min<int64_t>(7, mel.size(0) - t))));
    parts.push_back(v.drain());
    return at::cat(parts);
  };
  chatterbox::VocosVocoder alone(m1);
  const at::Tensor expected = stream(alone);
  std::vector<at::Tensor> got(2);
  std::vector<std::thread> th;
  for (int t = 0; t < 2; ++t)
    th.emplace_back([&, t] {
      chatterbox::VocosVocoder v(m1);  // same model object: shared weights
      at::Tensor last;
      for (int rep = 0; rep < 20; ++rep) last = stream(v);
      got[t] = last;
    });
  for (auto& t : th) t.join();
  for (const auto& g : got) BOOST_TEST(at::equal(g, expected));
}

BOOST_AUTO_TEST_CASE(hift_vocoders_on_one_model_in_two_threads) {
  auto model = chatterbox::hift::HiftModel::load(fixture("hift/hift_tiny.safetensors"));
  at::Tensor mel = chatterbox::Checkpoint::open(fixture("hift/hift_tiny.safetensors")).get("test.input_mel")[0].t().contiguous();
  chatterbox::hift::HiftVocoderOptions opts;
  opts.draws = chatterbox::hift::SourceDraws::random(5);
  auto stream = [&](chatterbox::hift::HiftVocoder& v) {
    std::vector<at::Tensor> parts;
    for (int64_t t = 0; t < mel.size(0); t += 5) parts.push_back(v.feed(mel.narrow(0, t, std::min<int64_t>(5, mel.size(0) - t))));
    parts.push_back(v.drain());
    return at::cat(parts);
  };
  chatterbox::hift::HiftVocoder alone(model, opts);
  const at::Tensor expected = stream(alone);
  std::vector<at::Tensor> got(2);
  std::vector<std::thread> th;
  for (int t = 0; t < 2; ++t)
    th.emplace_back([&, t] {
      chatterbox::hift::HiftVocoder v(model, opts);
      got[t] = stream(v);  // utterance 0 of a fresh vocoder: the same draws
    });
  for (auto& t : th) t.join();
  for (const auto& g : got) BOOST_TEST(at::equal(g, expected));
}

BOOST_AUTO_TEST_CASE(t3_and_s3gen_on_one_model_in_two_threads) {
  const chatterbox::t3::T3Model t3 = chatterbox::t3::T3Model::load(fixture("t3/t3_tiny.safetensors"));
  const chatterbox::t3::T3Cond cond = chatterbox::t3::T3Cond::load(fixture("t3/conds_tiny.safetensors"));
  auto tok = chatterbox::t3::EnTokenizer::from_file(fixture("t3/tokenizer_tiny.json"), t3.config().text_tokens_dict_size);
  const std::vector<int64_t> ids = tok.encode("the little robot counted stones");
  chatterbox::t3::SamplingOptions so;
  so.seed = 4;  // sampled: the per-generator draws must not interfere
  const std::vector<int64_t> tokens = t3.inference(ids, cond, so);

  const chatterbox::S3GenFlow flow = chatterbox::S3GenFlow::load(fixture("s3gen/flow_tiny.safetensors"));
  const chatterbox::S3GenVoice voice = chatterbox::S3GenVoice::load(Inputs::get().s3gen_voice);
  at::Tensor tok_in = chatterbox::Checkpoint::open(fixture("s3gen/flow_tiny.safetensors")).get_raw("test.token");
  chatterbox::S3GenInferenceOptions fo;
  fo.seed = 2;
  const at::Tensor mel = flow.inference(tok_in, voice, fo);

  std::vector<std::vector<int64_t>> t3_out(2);
  std::vector<at::Tensor> mel_out(2);
  std::vector<std::thread> th;
  for (int t = 0; t < 2; ++t)
    th.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        t3_out[t] = t3.inference(ids, cond, so);
        mel_out[t] = flow.inference(tok_in, voice, fo);
      }
    });
  for (auto& t : th) t.join();
  for (int t = 0; t < 2; ++t) {
    BOOST_TEST(t3_out[t] == tokens);
    BOOST_TEST(at::equal(mel_out[t], mel));
  }
}

// --- elements share through the cache ----------------------------------------------------

// Brings `e` to READY (loads its model) or fails the test.
void ready(GstElement* e) { BOOST_REQUIRE(gst_element_set_state(e, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS); }

BOOST_AUTO_TEST_CASE(elements_naming_one_file_share_weights_until_the_last_goes) {
  const Inputs& in = Inputs::get();
  // A second file with the same bytes is another model (its own entry).
  const std::string vocos = fixture("vocos/tiny_s3gen_same.safetensors");
  const std::string vocos_copy = temp_path("vocos-copy.safetensors");
  { std::ofstream(vocos_copy, std::ios::binary) << chatterbox::test::slurp(vocos); }
  struct Kind {
    const char* factory;
    const char* kind;
    std::vector<std::pair<const char*, std::string>> props;
  };
  const std::vector<Kind> kinds = {
      {"vocosdec", "vocos", {{"model", vocos}}},
      {"hiftdec", "hift", {{"model", fixture("hift/hift_tiny.safetensors")}}},
      {"s3genmel", "s3gen", {{"model", fixture("s3gen/flow_tiny.safetensors")}, {"voice", in.s3gen_voice}}},
      {"t3", "t3",
       {{"model", fixture("t3/t3_tiny.safetensors")}, {"tokenizer", fixture("t3/tokenizer_tiny.json")},
        {"voice", fixture("t3/conds_tiny.safetensors")}}},
  };
  for (const auto& k : kinds) {
    BOOST_TEST_REQUIRE(live(k.kind).empty(), k.kind);
    const uint64_t loads0 = ModelCache::global().loads();
    std::vector<GstElement*> els;
    for (int i = 0; i < 3; ++i) {
      GstElement* e = gst_element_factory_make(k.factory, nullptr);
      for (const auto& p : k.props) g_object_set(e, p.first, p.second.c_str(), nullptr);
      els.push_back(GST_ELEMENT(gst_object_ref_sink(e)));
      ready(e);
    }
    auto entries = live(k.kind);
    BOOST_TEST_REQUIRE(entries.size() == 1u, k.kind);
    BOOST_TEST(entries[0].users == 3, k.kind);
    BOOST_TEST(ModelCache::global().loads() - loads0 == 1u, k.kind << ": three elements, one load");
    // One element to NULL: the others keep the weights.
    gst_element_set_state(els[0], GST_STATE_NULL);
    BOOST_TEST(live(k.kind).at(0).users == 2, k.kind);
    for (GstElement* e : els) {
      gst_element_set_state(e, GST_STATE_NULL);
      gst_object_unref(e);
    }
    BOOST_TEST(live(k.kind).empty(), k.kind << ": weights not freed with the last user");
  }
  // Different files: separate weights.
  GstElement* a = GST_ELEMENT(gst_object_ref_sink(gst_element_factory_make("vocosdec", nullptr)));
  GstElement* b = GST_ELEMENT(gst_object_ref_sink(gst_element_factory_make("vocosdec", nullptr)));
  g_object_set(a, "model", vocos.c_str(), nullptr);
  g_object_set(b, "model", vocos_copy.c_str(), nullptr);
  ready(a);
  ready(b);
  auto entries = live("vocos");
  BOOST_TEST(entries.size() == 2u);
  for (const auto& e : entries) BOOST_TEST(e.users == 1);
  for (GstElement* e : {a, b}) {
    gst_element_set_state(e, GST_STATE_NULL);
    gst_object_unref(e);
  }
  BOOST_TEST(live("vocos").empty());
}

// The library-level hook: models from the cache are one object in memory.
BOOST_AUTO_TEST_CASE(cached_vocos_models_are_one_set_of_weights) {
  const std::string path = fixture("vocos/tiny_s3gen_same.safetensors");
  auto load = [&] {
    return ModelCache::global().get<chatterbox::VocosModel>(ModelCache::make_key("vocos", {path}),
                                                            [&] { return chatterbox::VocosModel::load(path); });
  };
  auto a = load(), b = load();
  BOOST_TEST(a->weights_data() == b->weights_data());
  chatterbox::VocosVocoder va(a), vb(b);
  BOOST_TEST(va.model()->weights_data() == vb.model()->weights_data());
}
