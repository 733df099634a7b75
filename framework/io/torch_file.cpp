// torch.save reader: a stored-only zip reader and a restricted unpickler (see torch_file.h).
#include "torch_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "../error.h"
#include "stored_dtype.h"

namespace dermis::io {

namespace {

using Bytes = std::vector<unsigned char>;

uint64_t le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

Bytes read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  DERMIS_CHECK(f.good(), "cannot open {}: {}", path, std::strerror(errno));
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  DERMIS_CHECK(size >= 0, "cannot read {}", path);
  f.seekg(0);
  Bytes b(static_cast<size_t>(size));
  f.read(reinterpret_cast<char*>(b.data()), size);
  DERMIS_CHECK(f.good() || size == 0, "cannot read {}: {}", path, std::strerror(errno));
  return b;
}

// ---- zip (stored entries only: torch.save never compresses) ----
struct ZipEntry {
  uint64_t offset = 0, size = 0;  // of the entry's data in the file
};

std::map<std::string, ZipEntry> read_zip(const Bytes& b, const std::string& path) {
  const uint64_t n = b.size();
  DERMIS_CHECK(n >= 22, "{} is not a torch.save file: {} bytes is too short for a zip archive (truncated?)", path, n);
  int64_t eocd = -1;
  const int64_t lowest = std::max<int64_t>(0, static_cast<int64_t>(n) - 22 - 65535);
  for (int64_t i = static_cast<int64_t>(n) - 22; i >= lowest; --i)
    if (le(&b[static_cast<size_t>(i)], 4) == 0x06054b50u) {
      eocd = i;
      break;
    }
  DERMIS_CHECK(eocd >= 0, "{} is damaged: no zip end-of-archive record (truncated download?)", path);
  const unsigned char* e = &b[static_cast<size_t>(eocd)];
  uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_off = le(e + 16, 4);
  if (count == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {  // zip64
    DERMIS_CHECK(eocd >= 20 && le(&b[static_cast<size_t>(eocd - 20)], 4) == 0x07064b50u,
                 "{} is damaged: zip64 locator missing", path);
    const uint64_t z = le(&b[static_cast<size_t>(eocd - 20) + 8], 8);
    DERMIS_CHECK(n >= 56 && z <= n - 56 && le(&b[z], 4) == 0x06064b50u, "{} is damaged: zip64 end-of-archive record missing",
                 path);
    count = le(&b[z + 32], 8), cd_size = le(&b[z + 40], 8), cd_off = le(&b[z + 48], 8);
  }
  DERMIS_CHECK(cd_off <= n && cd_size <= n - cd_off, "{} is damaged: the zip directory lies outside the file (truncated?)",
               path);
  DERMIS_CHECK(count <= cd_size / 46, "{} is damaged: {} zip entries cannot fit a {}-byte directory", path, count, cd_size);
  std::map<std::string, ZipEntry> out;
  uint64_t p = cd_off;
  const uint64_t cd_end = cd_off + cd_size;
  for (uint64_t k = 0; k < count; ++k) {
    DERMIS_CHECK(p + 46 <= cd_end && le(&b[p], 4) == 0x02014b50u, "{} is damaged: zip directory entry {} is broken", path, k);
    const uint64_t method = le(&b[p + 10], 2), flags = le(&b[p + 8], 2);
    uint64_t csize = le(&b[p + 20], 4), usize = le(&b[p + 24], 4), local = le(&b[p + 42], 4);
    const uint64_t nlen = le(&b[p + 28], 2), xlen = le(&b[p + 30], 2), clen = le(&b[p + 32], 2);
    DERMIS_CHECK(p + 46 + nlen + xlen + clen <= cd_end, "{} is damaged: zip directory entry {} overruns the directory", path, k);
    std::string name(reinterpret_cast<const char*>(&b[p + 46]), nlen);
    for (uint64_t x = p + 46 + nlen; x + 4 <= p + 46 + nlen + xlen;) {  // zip64 sizes and offset
      const uint64_t id = le(&b[x], 2), len = le(&b[x + 2], 2);
      DERMIS_CHECK(x + 4 + len <= p + 46 + nlen + xlen, "{} is damaged: zip entry '{}' has a broken extra field", path, name);
      if (id == 1) {
        uint64_t q = x + 4;
        const uint64_t qe = x + 4 + len;
        auto take = [&](uint64_t& v) {
          if (v != 0xffffffffu) return;
          DERMIS_CHECK(q + 8 <= qe, "{} is damaged: zip entry '{}' has a short zip64 field", path, name);
          v = le(&b[q], 8), q += 8;
        };
        take(usize), take(csize), take(local);
      }
      x += 4 + len;
    }
    DERMIS_CHECK(method == 0 && csize == usize,
                 "{}: zip entry '{}' is compressed (method {}); torch.save writes stored entries only — re-save the "
                 "file with torch.save",
                 path, name, method);
    DERMIS_CHECK((flags & 1) == 0, "{}: zip entry '{}' is encrypted", path, name);
    DERMIS_CHECK(local <= n && n - local >= 30 && le(&b[local], 4) == 0x04034b50u,
                 "{} is damaged: zip entry '{}' points outside the file (truncated?)", path, name);
    const uint64_t data = local + 30 + le(&b[local + 26], 2) + le(&b[local + 28], 2);
    DERMIS_CHECK(data <= n && usize <= n - data, "{} is truncated: zip entry '{}' needs {} bytes past the end", path, name,
                 data + usize > n ? data + usize - n : 0);
    out[name] = ZipEntry{data, usize};
    p += 46 + nlen + xlen + clen;
  }
  return out;
}

// ---- the unpickler ----
// Values live in an arena and refer to each other by index, so that deep or cyclic structures a
// damaged file builds cost no recursion and leak nothing.
using Id = int32_t;
enum class Kind { none, boolean, integer, real, str, tuple, list, dict, global, storage, tensor, opaque };

struct Node {
  Kind kind = Kind::none;
  int64_t i = 0;
  double d = 0;
  std::string s, s2;                  // str and bytes; global: module and name; storage: key
  std::vector<Id> items;              // tuple, list
  std::vector<std::pair<Id, Id>> kv;  // dict
  StoredDType dtype = StoredDType::f32;
  Tensor t;
};

const char* kind_name(Kind k) {
  static const char* n[] = {"None", "bool", "int", "float", "str", "tuple", "list", "dict", "class", "storage", "tensor", "object"};
  return n[static_cast<int>(k)];
}

class Unpickler {
 public:
  Unpickler(const Bytes& file, const std::map<std::string, ZipEntry>& zip, std::string prefix, std::string path)
      : file_(file), zip_(zip), prefix_(std::move(prefix)), path_(std::move(path)) {}

  Id run(const unsigned char* p, size_t n);
  const Node& node(Id id) const { return nodes_[static_cast<size_t>(id)]; }

 private:
  static constexpr Id kMark = -1;
  static constexpr size_t kMaxNodes = 1'000'000;

  [[noreturn]] void fail(const std::string& what) const {
    DERMIS_FAIL("{} is damaged or not a PyTorch state dict: {}data.pkl, byte {}: {}", path_, prefix_, op_, what);
  }
  Id make(Node n) {
    if (nodes_.size() >= kMaxNodes) fail("too many objects");
    nodes_.push_back(std::move(n));
    return static_cast<Id>(nodes_.size() - 1);
  }
  Node& at(Id id) { return nodes_[static_cast<size_t>(id)]; }
  Id pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    const Id v = stack_.back();
    stack_.pop_back();
    if (v == kMark) fail("unexpected mark");
    return v;
  }
  Id& top() {
    if (stack_.empty() || stack_.back() == kMark) fail("stack underflow");
    return stack_.back();
  }
  std::vector<Id> pop_to_mark() {
    if (marks_.empty()) fail("no mark on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Id> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    if (stack_.empty() || stack_.back() != kMark) fail("broken mark");
    stack_.pop_back();
    return v;
  }
  const unsigned char* need(size_t k) {
    if (k > n_ - pos_) fail(fmt::format("{} bytes needed, {} left (truncated?)", k, n_ - pos_));
    const unsigned char* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') ++pos_;
    if (pos_ >= n_) fail("unterminated text");
    std::string s(reinterpret_cast<const char*>(p_ + start), pos_ - start);
    ++pos_;
    return s;
  }
  Id str(std::string s) {
    Node n;
    n.kind = Kind::str, n.s = std::move(s);
    return make(std::move(n));
  }
  Id integer(int64_t v) {
    Node n;
    n.kind = Kind::integer, n.i = v;
    return make(std::move(n));
  }
  Id seq(Kind k, std::vector<Id> items) {
    Node n;
    n.kind = k, n.items = std::move(items);
    return make(std::move(n));
  }
  void memo_put(int64_t k) { memo_[k] = top(); }
  Id memo_get(int64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) fail(fmt::format("memo entry {} was never stored", k));
    return it->second;
  }
  void set_items(Id d, const std::vector<Id>& kv) {
    if (kv.size() % 2) fail("odd number of dict items");
    Node& n = at(d);
    if (n.kind == Kind::opaque) return;  // an object's state: not needed
    if (n.kind != Kind::dict) fail(fmt::format("items set on a {}", kind_name(n.kind)));
    for (size_t i = 0; i < kv.size(); i += 2) n.kv.emplace_back(kv[i], kv[i + 1]);
  }
  void append(Id l, const std::vector<Id>& v) {
    Node& n = at(l);
    if (n.kind == Kind::opaque) return;
    if (n.kind != Kind::list) fail(fmt::format("append to a {}", kind_name(n.kind)));
    n.items.insert(n.items.end(), v.begin(), v.end());
  }
  Id reduce(Id callable, Id args);
  Id persistent(Id pid);
  Id rebuild_tensor(const std::vector<Id>& a);
  std::vector<int64_t> int_tuple(Id id, const char* what) {
    const Node& n = node(id);
    if (n.kind != Kind::tuple && n.kind != Kind::list) fail(fmt::format("tensor {} is a {}, not a tuple", what, kind_name(n.kind)));
    std::vector<int64_t> v;
    for (Id x : n.items) {
      if (node(x).kind != Kind::integer) fail(fmt::format("tensor {} holds a {}", what, kind_name(node(x).kind)));
      v.push_back(node(x).i);
    }
    return v;
  }

  const Bytes& file_;
  const std::map<std::string, ZipEntry>& zip_;
  std::string prefix_, path_;
  const unsigned char* p_ = nullptr;
  size_t n_ = 0, pos_ = 0, op_ = 0;  // op_: where the opcode being run starts
  std::vector<Node> nodes_;
  std::vector<Id> stack_;
  std::vector<size_t> marks_;  // stack sizes just above each mark
  std::unordered_map<int64_t, Id> memo_;
};

Id Unpickler::persistent(Id pid) {
  const Node& t = node(pid);
  if (t.kind != Kind::tuple || t.items.size() < 5) fail("persistent id is not a storage tuple");
  const Node &tag = node(t.items[0]), &type = node(t.items[1]), &key = node(t.items[2]), &numel = node(t.items[4]);
  if (tag.kind != Kind::str || tag.s != "storage") fail("persistent id is not a storage");
  if (key.kind != Kind::str || numel.kind != Kind::integer || numel.i < 0) fail("storage key or size is malformed");
  Node s;
  s.kind = Kind::storage;
  if (type.kind != Kind::global || type.s != "torch" || !stored_dtype_named(type.s2, &StoredDTypeName::torch_storage, s.dtype))
    fail(fmt::format("storage type {}.{} is not supported", type.s, type.s2));
  s.s = key.s, s.i = numel.i;
  const auto it = zip_.find(prefix_ + "data/" + key.s);
  if (it == zip_.end()) fail(fmt::format("storage '{}' has no data/{} in the archive", key.s, key.s));
  if (static_cast<uint64_t>(s.i) > it->second.size / static_cast<uint64_t>(stored_size(s.dtype)))
    fail(fmt::format("storage '{}' holds {} bytes, too few for {} {} elements", key.s, it->second.size, s.i,
                     stored_name(s.dtype)));
  return make(std::move(s));
}

// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata]).
Id Unpickler::rebuild_tensor(const std::vector<Id>& a) {
  if (a.size() < 4) fail("_rebuild_tensor with too few arguments");
  const Node& st = node(a[0]);
  if (st.kind != Kind::storage) fail(fmt::format("tensor built on a {}, not a storage", kind_name(st.kind)));
  if (node(a[1]).kind != Kind::integer) fail("tensor storage offset is not an integer");
  const int64_t offset = node(a[1]).i;
  const std::vector<int64_t> size = int_tuple(a[2], "size"), stride = int_tuple(a[3], "stride");
  if (size.size() != stride.size() || size.size() > 8) fail("tensor size and stride do not match");
  Shape shape;
  int64_t numel = 1, last = offset;  // the furthest element the view reaches
  if (offset < 0 || offset > st.i) fail(fmt::format("tensor storage offset {} outside a storage of {}", offset, st.i));
  for (size_t d = 0; d < size.size(); ++d) {
    if (size[d] < 0 || stride[d] < 0 || size[d] > st.i || stride[d] > st.i)
      fail(fmt::format("tensor size {} or stride {} out of range for a storage of {}", size[d], stride[d], st.i));
    if (size[d] > 0 && numel > st.i / size[d])  // checked before multiplying: no overflow
      fail("tensor has more elements than its storage (an expanded view: save a contiguous copy)");
    numel *= size[d];
    if (size[d] > 1 && stride[d] > 0) {  // last stays <= st.i, so nothing overflows
      if (size[d] - 1 > (st.i - last) / stride[d]) fail(fmt::format("tensor view reaches past its storage of {}", st.i));
      last += (size[d] - 1) * stride[d];
    }
    shape.push_back(size[d]);
  }
  if (numel > 0 && last >= st.i) fail(fmt::format("tensor view reaches element {} of a storage of {}", last, st.i));
  const ZipEntry& z = zip_.at(prefix_ + "data/" + st.s);
  const unsigned char* base = file_.data() + z.offset;
  const int es = stored_size(st.dtype);
  Node out;
  if (numel == 0) {  // an empty tensor: nothing dermis can load; left out of the state dict
    out.kind = Kind::opaque;
    return make(std::move(out));
  }
  out.kind = Kind::tensor;
  out.t = Tensor::empty(shape.empty() ? Shape{1} : shape);  // a 0-d tensor (num_batches_tracked) as shape (1)
  float* dst = out.t.data();
  std::vector<int64_t> idx(size.size(), 0);
  for (int64_t e = 0; e < numel; ++e) {
    int64_t off = offset;
    for (size_t d = 0; d < size.size(); ++d) off += idx[d] * stride[d];
    dst[e] = stored_to_float(base + off * es, st.dtype);
    for (size_t d = size.size(); d-- > 0;) {
      if (++idx[d] < size[d]) break;
      idx[d] = 0;
    }
  }
  return make(std::move(out));
}

Id Unpickler::reduce(Id callable, Id args) {
  const Node& c = node(callable);
  const Node& a = node(args);
  if (a.kind != Kind::tuple) fail("call arguments are not a tuple");
  if (c.kind == Kind::global) {
    const std::string f = c.s + "." + c.s2;
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") return rebuild_tensor(a.items);
    if (f == "torch._utils._rebuild_parameter" || f == "torch._utils._rebuild_parameter_with_state") {
      if (a.items.empty() || node(a.items[0]).kind != Kind::tensor) fail("parameter without a tensor");
      return a.items[0];
    }
    if (f == "collections.OrderedDict" || f == "builtins.dict") {
      Node d;
      d.kind = Kind::dict;
      return make(std::move(d));
    }
  }
  Node o;  // anything else: an object dermis does not need
  o.kind = Kind::opaque;
  if (c.kind == Kind::global) o.s = c.s, o.s2 = c.s2;
  return make(std::move(o));
}

Id Unpickler::run(const unsigned char* p, size_t n) {
  p_ = p, n_ = n, pos_ = 0;
  while (true) {
    op_ = pos_;
    const unsigned char op = *need(1);
    switch (op) {
      case 0x80: need(1); break;  // PROTO
      case 0x95: need(8); break;  // FRAME
      case '.': {                 // STOP
        const Id r = pop();
        return r;
      }
      case '(': stack_.push_back(kMark), marks_.push_back(stack_.size()); break;
      case 'N': stack_.push_back(make(Node{})); break;
      case 0x88:
      case 0x89: {
        Node b;
        b.kind = Kind::boolean, b.i = op == 0x88;
        stack_.push_back(make(std::move(b)));
        break;
      }
      case 'J': stack_.push_back(integer(static_cast<int32_t>(le(need(4), 4)))); break;
      case 'K': stack_.push_back(integer(*need(1))); break;
      case 'M': stack_.push_back(integer(static_cast<int64_t>(le(need(2), 2)))); break;
      case 0x8a: {  // LONG1
        const size_t k = *need(1);
        if (k > 8) fail("integer wider than 64 bits");
        const unsigned char* b = need(k);
        uint64_t v = k ? le(b, static_cast<int>(k)) : 0;
        if (k > 0 && k < 8 && (b[k - 1] & 0x80)) v |= ~uint64_t{0} << (8 * k);  // sign-extend
        stack_.push_back(integer(static_cast<int64_t>(v)));
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        const unsigned char* b = need(8);
        uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | b[i];
        Node r;
        r.kind = Kind::real;
        std::memcpy(&r.d, &u, 8);
        stack_.push_back(make(std::move(r)));
        break;
      }
      case 'X':    // BINUNICODE
      case 'T':    // BINSTRING
      case 'B':    // BINBYTES
      case 0x8c:   // SHORT_BINUNICODE
      case 'U':    // SHORT_BINSTRING
      case 'C':    // SHORT_BINBYTES
      case 0x8d:   // BINUNICODE8
      case 0x8e: {  // BINBYTES8
        const int w = (op == 'X' || op == 'T' || op == 'B') ? 4 : (op == 0x8d || op == 0x8e) ? 8 : 1;
        const uint64_t k = le(need(static_cast<size_t>(w)), w);
        if (k > n_ - pos_) fail(fmt::format("string of {} bytes runs past the end (truncated?)", k));
        const unsigned char* b = need(static_cast<size_t>(k));
        stack_.push_back(str(std::string(reinterpret_cast<const char*>(b), static_cast<size_t>(k))));
        break;
      }
      case '}': {
        Node d;
        d.kind = Kind::dict;
        stack_.push_back(make(std::move(d)));
        break;
      }
      case ']': stack_.push_back(seq(Kind::list, {})); break;
      case ')': stack_.push_back(seq(Kind::tuple, {})); break;
      case 't': stack_.push_back(seq(Kind::tuple, pop_to_mark())); break;
      case 'l': stack_.push_back(seq(Kind::list, pop_to_mark())); break;
      case 'd': {
        const std::vector<Id> kv = pop_to_mark();
        Node d;
        d.kind = Kind::dict;
        const Id id = make(std::move(d));
        set_items(id, kv);
        stack_.push_back(id);
        break;
      }
      case 0x85:
      case 0x86:
      case 0x87: {
        const int k = op - 0x84;
        std::vector<Id> v(static_cast<size_t>(k));
        for (int i = k; i-- > 0;) v[static_cast<size_t>(i)] = pop();
        stack_.push_back(seq(Kind::tuple, std::move(v)));
        break;
      }
      case 'q': memo_put(*need(1)); break;
      case 'r': memo_put(static_cast<int64_t>(le(need(4), 4))); break;
      case 0x94: memo_put(static_cast<int64_t>(memo_.size())); break;  // MEMOIZE
      case 'h': stack_.push_back(memo_get(*need(1))); break;
      case 'j': stack_.push_back(memo_get(static_cast<int64_t>(le(need(4), 4)))); break;
      case 's': {
        const Id v = pop(), k = pop();
        set_items(top(), {k, v});
        break;
      }
      case 'u': {
        const std::vector<Id> kv = pop_to_mark();
        set_items(top(), kv);
        break;
      }
      case 'a': {
        const Id v = pop();
        append(top(), {v});
        break;
      }
      case 'e': {
        const std::vector<Id> v = pop_to_mark();
        append(top(), v);
        break;
      }
      case 'c': {
        Node g;
        g.kind = Kind::global, g.s = line(), g.s2 = line();
        stack_.push_back(make(std::move(g)));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const Id name = pop(), mod = pop();
        if (node(name).kind != Kind::str || node(mod).kind != Kind::str) fail("STACK_GLOBAL needs two strings");
        Node g;
        g.kind = Kind::global, g.s = node(mod).s, g.s2 = node(name).s;
        stack_.push_back(make(std::move(g)));
        break;
      }
      case 'R': {
        const Id args = pop(), f = pop();
        stack_.push_back(reduce(f, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        const Id args = pop(), cls = pop();
        stack_.push_back(reduce(cls, args));
        break;
      }
      case 'b': pop(); top(); break;  // BUILD: the state of an object (e.g. a state dict's _metadata)
      case 'Q': stack_.push_back(persistent(pop())); break;
      case '0': pop(); break;
      case '1': pop_to_mark(); break;
      case '2': stack_.push_back(top()); break;
      case 0x8f: stack_.push_back(seq(Kind::list, {})); break;  // EMPTY_SET (kept as a list)
      case 0x90: {                                               // ADDITEMS
        const std::vector<Id> v = pop_to_mark();
        append(top(), v);
        break;
      }
      default:
        fail(fmt::format("unsupported pickle opcode 0x{:02x} (dermis reads the protocol 2-5 subset torch.save writes)", op));
    }
  }
}

void collect(const Unpickler& u, Id d, const std::string& prefix, int depth, std::vector<std::pair<std::string, Tensor>>& out) {
  if (depth > 16) return;
  for (auto& [k, v] : u.node(d).kv) {
    const Node& key = u.node(k);
    if (key.kind != Kind::str) continue;
    const Node& val = u.node(v);
    if (val.kind == Kind::tensor) out.emplace_back(prefix + key.s, val.t);
    else if (val.kind == Kind::dict) collect(u, v, prefix + key.s + ".", depth + 1, out);
  }
}

bool has_direct_tensor(const Unpickler& u, Id d) {
  for (auto& [k, v] : u.node(d).kv)
    if (u.node(v).kind == Kind::tensor) return true;
  return false;
}

}  // namespace

TensorFile load_torch(const std::string& path) {
  const Bytes b = read_all(path);
  if (b.size() >= 2 && b[0] == 0x80 && b[1] <= 5)
    DERMIS_FAIL("{} is a torch.save file in the legacy (before PyTorch 1.6) format, which dermis does not read; re-save it "
                "once with PyTorch: torch.save(torch.load(OLD), NEW)",
                path);
  DERMIS_CHECK(b.size() >= 4 && le(b.data(), 4) == 0x04034b50u,
               "{} is not a torch.save file (no zip archive) nor safetensors; expected a .pth/.pt written by torch.save", path);
  const std::map<std::string, ZipEntry> zip = read_zip(b, path);
  std::string pkl;
  for (auto& [name, e] : zip) {
    const std::string tail = "data.pkl";
    if (name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0 &&
        std::count(name.begin(), name.end(), '/') <= 1 && (pkl.empty() || name.size() < pkl.size()))
      pkl = name;
  }
  DERMIS_CHECK(!pkl.empty(), "{} is a zip archive without data.pkl: not a torch.save file", path);
  const std::string prefix = pkl.substr(0, pkl.size() - 8);
  if (auto bo = zip.find(prefix + "byteorder"); bo != zip.end()) {
    const std::string order(reinterpret_cast<const char*>(&b[bo->second.offset]), bo->second.size);
    DERMIS_CHECK(order == "little", "{} was saved on a {}-endian machine; dermis reads little-endian files", path, order);
  }
  const ZipEntry& pe = zip.at(pkl);
  DERMIS_CHECK(pe.size <= (64u << 20), "{}: {} is {} bytes, too large for a state dict's pickle", path, pkl, pe.size);
  Unpickler u(b, zip, prefix, path);
  const Id root = u.run(&b[pe.offset], pe.size);
  const Node& r = u.node(root);
  DERMIS_CHECK(r.kind == Kind::dict, "{} holds a {}, not a state dict (a dict of tensors); save model.state_dict()", path,
               kind_name(r.kind));
  TensorFile out;
  out.path = path;
  if (has_direct_tensor(u, root)) {
    collect(u, root, "", 0, out.tensors);
  } else {
    for (const char* k : {"state_dict", "model_state_dict", "model", "module", "net", "ema", "state"}) {
      for (auto& [key, v] : r.kv)
        if (u.node(key).kind == Kind::str && u.node(key).s == k && u.node(v).kind == Kind::dict) {
          collect(u, v, "", 0, out.tensors);
          break;
        }
      if (!out.tensors.empty()) {
        out.metadata["torch.state_dict_key"] = k;
        break;
      }
    }
  }
  if (out.tensors.empty()) {
    std::string keys;
    for (auto& [key, v] : r.kv)
      if (u.node(key).kind == Kind::str && keys.size() < 200) keys += (keys.empty() ? "" : ", ") + u.node(key).s;
    DERMIS_FAIL("{} holds no tensors: a dict with keys [{}] and no state dict among them", path, keys);
  }
  std::vector<std::string> names;
  for (auto& [n, t] : out.tensors) names.push_back(n);
  std::sort(names.begin(), names.end());
  const auto dup = std::adjacent_find(names.begin(), names.end());
  DERMIS_CHECK(dup == names.end(), "{}: tensor name '{}' appears twice", path, dup == names.end() ? "" : *dup);
  return out;
}

TensorFile load_weights_file(const std::string& path) {
  DERMIS_CHECK(!std::filesystem::is_directory(path), "{} is a folder, not a weights file; give the .pth, .pt or "
               ".safetensors file in it", path);
  std::ifstream f(path, std::ios::binary);
  DERMIS_CHECK(f.good(), "cannot open {}: {}", path, std::strerror(errno));
  unsigned char m[2] = {};
  f.read(reinterpret_cast<char*>(m), 2);
  if (f.good() && ((m[0] == 'P' && m[1] == 'K') || (m[0] == 0x80 && m[1] <= 5))) return load_torch(path);
  try {
    return load_safetensors(path);
  } catch (const Error& e) {
    DERMIS_FAIL("{} is neither a torch.save file (.pth/.pt: a zip archive) nor a readable safetensors file: {}", path,
                e.what());
  }
}

}  // namespace dermis::io
