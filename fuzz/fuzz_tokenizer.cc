// libFuzzer harness: EnTokenizer::from_json_string (Chatterbox's
// tokenizer.json reader) on arbitrary bytes; a tokenizer that loads then
// encodes a fixed set of texts (spaces, added tokens, unknown characters,
// non-ASCII) and looks every id back up.
#include "elements/t3/model/text_frontend.h"
#include "fuzz/fuzz_common.h"

#include <string>

using namespace chatterbox;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  FUZZ_EXPECT_MODEL_ERROR({
    t3::EnTokenizer tok = t3::EnTokenizer::from_json_string(text, "fuzz_tokenizer.json");
    for (const char* s : {"Hello world.", "  a  b ", "[START]x[STOP]", "\xc3\xa9t\xc3\xa9 \xe2\x80\x94 ok?", ""}) {
      for (int64_t id : tok.text_to_ids(s)) (void)tok.token(id);
      (void)tok.encode_tokens(s);
    }
    (void)tok.token_id("[UNK]");
  });
  return 0;
}
