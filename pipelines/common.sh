# Shared by the example pipelines: finds the built plugin and default models.
# Source it; it sets GST_PLUGIN_PATH (the build tree) unless the plugin is
# already installed, and CHATTERBOX_ROOT.
CHATTERBOX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${CHATTERBOX_BUILD_DIR:-$CHATTERBOX_ROOT/build}"
if [ -f "$BUILD_DIR/gst-plugins/libgstchatterbox.so" ]; then
  export GST_PLUGIN_PATH="$BUILD_DIR/gst-plugins${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
fi
FIXTURES="${CHATTERBOX_FIXTURES:-$CHATTERBOX_ROOT/../shared/fixtures}"

# The embedded default Vocos (S3Gen layout), once trained by vocos-train.
default_vocos_model() {
  local m="$CHATTERBOX_ROOT/models/vocos-s3gen-small.safetensors"
  if [ -f "$m" ]; then echo "$m"; return; fi
  echo "note: no embedded default Vocos yet (models/vocos-s3gen-small.safetensors); using the tiny" \
       "random-weight fixture model: the pipeline runs, the audio is not speech" >&2
  echo "$FIXTURES/vocos/tiny_s3gen_same.safetensors"
}
