// See zip_reader.h. Layout reference: PKWARE APPNOTE.TXT sections 4.3.7
// (local header), 4.3.12 (central directory header), 4.3.14-4.3.16 (zip64
// end of central directory record / locator, end of central directory).
#include "gst-plugins/core/zip_reader.h"

#include "gst-plugins/core/checkpoint.h"  // ModelError

#include <array>
#include <cstring>

namespace chatterbox {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t u64(const uint8_t* p) { return static_cast<uint64_t>(u32(p)) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

// Slice-by-8 tables: a few GB/s, so checking the CRC of a 1 GB checkpoint
// costs a fraction of the copy that follows.
struct CrcTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
};
const CrcTables& crc_tables() {
  static const CrcTables tables;
  return tables;
}

}  // namespace

uint32_t zip_crc32(const uint8_t* p, size_t n, uint32_t crc) {
  const auto& t = crc_tables().t;
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo = c ^ u32(p);
    uint32_t hi = u32(p + 4);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff] ^
        t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

ZipReader::ZipReader(const uint8_t* data, size_t size, std::string name)
    : data_(data), size_(size), name_(std::move(name)) {
  auto fail = [&](const std::string& why) {
    return ModelError("'" + name_ + "' is not a readable PyTorch zip checkpoint: " + why);
  };
  if (size_ < kEocdSize) throw fail("file of " + std::to_string(size_) + " bytes is too short to be a zip archive");

  // The end-of-central-directory record sits at the end, followed only by an
  // optional comment of up to 65535 bytes: scan backwards for its signature.
  size_t eocd = SIZE_MAX;
  const size_t lowest = size_ - kEocdSize > 0xffff ? size_ - kEocdSize - 0xffff : 0;
  for (size_t pos = size_ - kEocdSize + 1; pos-- > lowest;) {
    if (u32(data_ + pos) == kEocdSig && pos + kEocdSize + u16(data_ + pos + 20) <= size_) {
      eocd = pos;
      break;
    }
  }
  if (eocd == SIZE_MAX) throw fail("no end-of-central-directory record (truncated or not a zip file)");
  const uint8_t* e = data_ + eocd;
  if (u16(e + 4) != 0 || u16(e + 6) != 0) throw fail("multi-volume zip archives are not supported");
  uint64_t count = u16(e + 10);
  uint64_t cd_size = u32(e + 12);
  uint64_t cd_offset = u32(e + 16);
  uint64_t cd_end_limit = eocd;  // the central directory must end before the EOCD

  // Zip64: when present the locator sits right before the EOCD record and its
  // values override the (then saturated) 16/32-bit fields.
  if (eocd >= kZip64LocatorSize && u32(data_ + eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    const uint8_t* loc = data_ + eocd - kZip64LocatorSize;
    uint64_t z_off = u64(loc + 8);
    if (u32(loc + 4) != 0 || u32(loc + 16) > 1) throw fail("multi-volume zip64 archives are not supported");
    if (z_off > eocd - kZip64LocatorSize || eocd - kZip64LocatorSize - z_off < kZip64EocdSize)
      throw fail("zip64 end-of-central-directory offset " + std::to_string(z_off) + " is out of range");
    const uint8_t* z = data_ + z_off;
    if (u32(z) != kZip64EocdSig) throw fail("zip64 end-of-central-directory record has a bad signature");
    if (u32(z + 16) != 0 || u32(z + 20) != 0) throw fail("multi-volume zip64 archives are not supported");
    count = u64(z + 32);
    cd_size = u64(z + 40);
    cd_offset = u64(z + 48);
    cd_end_limit = z_off;
  } else if (count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
    throw fail("the end-of-central-directory record needs zip64 data but has no zip64 locator");
  }
  if (cd_offset > cd_end_limit || cd_size > cd_end_limit - cd_offset)
    throw fail("central directory [" + std::to_string(cd_offset) + ", +" + std::to_string(cd_size) +
               ") lies outside the file");
  if (count > cd_size / kCentralSize)
    throw fail("central directory of " + std::to_string(cd_size) + " bytes cannot hold " + std::to_string(count) +
               " entries");

  entries_.reserve(static_cast<size_t>(count));
  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_end - pos < kCentralSize) throw fail("central directory entry " + std::to_string(i) + " is truncated");
    const uint8_t* c = data_ + pos;
    if (u32(c) != kCentralSig) throw fail("central directory entry " + std::to_string(i) + " has a bad signature");
    ZipEntry en;
    en.flags = u16(c + 8);
    en.method = u16(c + 10);
    en.crc32 = u32(c + 16);
    en.compressed_size = u32(c + 20);
    en.size = u32(c + 24);
    const uint16_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
    const uint16_t disk = u16(c + 34);
    en.local_header_offset = u32(c + 42);
    const uint64_t total = kCentralSize + uint64_t{name_len} + extra_len + comment_len;
    if (cd_end - pos < total) throw fail("central directory entry " + std::to_string(i) + " runs past the directory");
    en.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);

    // Zip64 extended information: the saturated fields, in this fixed order.
    const bool need_usize = en.size == 0xffffffffu, need_csize = en.compressed_size == 0xffffffffu,
               need_off = en.local_header_offset == 0xffffffffu;
    if (need_usize || need_csize || need_off || disk == 0xffff) {
      const uint8_t* x = c + kCentralSize + name_len;
      const uint8_t* x_end = x + extra_len;
      bool found = false;
      while (x_end - x >= 4) {
        const uint16_t id = u16(x), len = u16(x + 2);
        if (x_end - x - 4 < len) break;
        if (id == 0x0001) {
          const uint8_t* f = x + 4;
          const uint8_t* f_end = f + len;
          auto take = [&](uint64_t& v) {
            if (f_end - f < 8) throw fail("zip64 extra field of '" + en.name + "' is too short");
            v = u64(f);
            f += 8;
          };
          if (need_usize) take(en.size);
          if (need_csize) take(en.compressed_size);
          if (need_off) take(en.local_header_offset);
          found = true;
          break;
        }
        x += 4 + len;
      }
      if (!found) throw fail("entry '" + en.name + "' needs a zip64 extra field but has none");
    }
    if (disk != 0 && disk != 0xffff) throw fail("multi-volume zip archives are not supported");
    if (by_name_.count(en.name)) throw fail("entry '" + en.name + "' appears twice");
    by_name_.emplace(en.name, entries_.size());
    entries_.push_back(std::move(en));
    pos += total;
  }
}

const ZipEntry* ZipReader::find(const std::string& entry_name) const {
  auto it = by_name_.find(entry_name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

std::pair<const uint8_t*, size_t> ZipReader::read(const ZipEntry& en) const {
  auto fail = [&](const std::string& why) {
    return ModelError("'" + name_ + "': cannot read zip entry '" + en.name + "': " + why);
  };
  if (en.flags & 1) throw fail("it is encrypted");
  if (en.method != 0)
    throw fail("it is compressed (zip method " + std::to_string(en.method) +
               "); torch.save writes uncompressed archives, so the file was repacked by another tool. "
               "Re-save it with torch.save, or repack it with `zip -0`");
  if (en.compressed_size != en.size) throw fail("stored entry has different compressed and uncompressed sizes");
  if (en.local_header_offset > size_ || size_ - en.local_header_offset < kLocalSize)
    throw fail("local header offset " + std::to_string(en.local_header_offset) + " is past the end of the file");
  const uint8_t* l = data_ + en.local_header_offset;
  if (u32(l) != kLocalSig) throw fail("local header has a bad signature");
  const uint64_t name_len = u16(l + 26), extra_len = u16(l + 28);
  const uint64_t start = en.local_header_offset + kLocalSize + name_len + extra_len;
  if (start > size_ || size_ - start < en.size)
    throw fail("its " + std::to_string(en.size) + " bytes at offset " + std::to_string(start) +
               " run past the end of the " + std::to_string(size_) + "-byte file (truncated download?)");
  if (name_len != en.name.size() || std::memcmp(l + kLocalSize, en.name.data(), name_len) != 0)
    throw fail("local header names a different file");
  const uint8_t* p = data_ + start;
  // torch >= 2.4 can skip the checksum when saving
  // (torch.serialization.set_crc32_options(False)), leaving the field 0, and
  // torch itself never verifies it on load; a zero CRC is therefore taken as
  // "not recorded" rather than as corruption.
  if (en.crc32 != 0 && zip_crc32(p, static_cast<size_t>(en.size)) != en.crc32)
    throw fail("CRC-32 mismatch (the file is corrupt)");
  return {p, static_cast<size_t>(en.size)};
}

}  // namespace chatterbox
