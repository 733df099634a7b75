// Out-of-line error construction keeps DERMIS_CHECK call sites small.
#include "error.h"

namespace dermis::detail {

void throw_error(const char* /*file*/, int /*line*/, const std::string& msg) {
  // The message is written for users (what, where, what to do); source locations would only add noise.
  throw Error(msg);
}

}  // namespace dermis::detail
