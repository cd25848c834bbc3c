// `voice=` for the elements: a conds file (conds.pt, or its safetensors
// flattening such as chatterbox-voice writes) or reference audio, from which
// the element's half of prepare_conditionals is computed once per file and
// shared through the ModelCache (model_cache.h) while some element holds it:
// keyed by the audio file's identity (path, size, mtime), the checkpoints'
// and the variant, so an edited recording is recomputed.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "elements/voice/conditionals/conditionals.h"

#include <memory>
#include <string>

namespace chatterbox::voice {

// True when `path` is not a tensor file (safetensors / torch zip, by content)
// but audio libsndfile can open (WAV, FLAC, Ogg, ...).
bool is_reference_audio(const std::string& path);

// s3genmel's half: embed_ref of the file's first 10 s with the tokenizer and
// speaker encoder of `s3gen_checkpoint` (Turbo preparation for mean-flow
// models).
std::shared_ptr<const S3GenRef> cached_s3gen_voice(const std::string& audio, const std::string& s3gen_checkpoint,
                                                   Variant variant);
// t3's half: prompt tokens (tokenizer of `s3gen_checkpoint`) and the
// VoiceEncoder embedding (`ve_checkpoint`); emotion_adv is
// opts.exaggeration.
std::shared_ptr<const T3Voice> cached_t3_voice(const std::string& audio, const std::string& s3gen_checkpoint,
                                               const std::string& ve_checkpoint, const CloneOptions& opts);

}  // namespace chatterbox::voice
