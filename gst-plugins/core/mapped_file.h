// A private mapping of a whole file (internal to gst-plugins/core), unmapped
// when the last owner goes. Copy-on-write: tensors handed out as views of it
// may be modified in place by a model without touching the file.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace chatterbox {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw ModelError("cannot open model file '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw ModelError("'" + path + "' is not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) addr_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (size_ > 0 && addr_ == MAP_FAILED) throw ModelError("cannot map '" + path + "': " + std::strerror(err));
  }
  ~MappedFile() {
    if (addr_ != MAP_FAILED) munmap(addr_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return size_ ? static_cast<const uint8_t*>(addr_) : nullptr; }
  size_t size() const { return size_; }

 private:
  void* addr_ = MAP_FAILED;
  size_t size_ = 0;
};

}  // namespace chatterbox
