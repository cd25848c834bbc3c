// Minimal read-only zip reader for PyTorch checkpoints (torch.save writes an
// uncompressed zip). Works on a caller-owned byte range (usually an mmap):
// nothing is copied, every offset and size read from the file is checked
// against the range before use, and a malformed archive is a ModelError.
//
// Only STORED (method 0) entries can be read; torch.save never compresses, so
// a compressed entry means the file was repacked by another tool and the user
// is told so. Zip64 is supported (torch writes it for files past 4 GiB).
//
// No LibTorch here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chatterbox {

struct ZipEntry {
  std::string name;
  uint64_t local_header_offset = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;  // uncompressed
  uint32_t crc32 = 0;
  uint16_t method = 0;
  uint16_t flags = 0;
};

class ZipReader {
 public:
  // Parses the end-of-central-directory record and the central directory.
  // `name` is used in messages only.
  ZipReader(const uint8_t* data, size_t size, std::string name);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& entry_name) const;

  // The bytes of a stored entry, CRC-32 checked (unless the recorded CRC is 0:
  // torch can save without one). ModelError when the entry is
  // compressed or encrypted, its local header is damaged, its data runs past
  // the end of the file, or the checksum does not match.
  std::pair<const uint8_t*, size_t> read(const ZipEntry& entry) const;

  const std::string& name() const { return name_; }

 private:
  const uint8_t* data_;
  size_t size_;
  std::string name_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

// Standard zip/zlib CRC-32 (reflected polynomial 0xEDB88320).
uint32_t zip_crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace chatterbox
