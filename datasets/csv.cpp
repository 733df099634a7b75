// CSV parsing (see csv.h): one pass over the text with a quote state machine.
#include "csv.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "framework/error.h"

namespace dermis::datasets {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

namespace {
bool iequal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}
bool blank(const std::vector<std::string>& fields) { return fields.size() == 1 && trim(fields[0]).empty(); }
}  // namespace

int CsvTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (iequal(header[i], name)) return static_cast<int>(i);
  return -1;
}

CsvTable parse_csv(const std::string& text, const std::string& path, char delimiter) {
  CsvTable t;
  t.path = path;
  size_t i = 0;
  const size_t n = text.size();
  if (n >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // UTF-8 byte-order mark
  int64_t line = 1;
  bool have_header = false;
  while (i < n) {
    // One record: fields until an unquoted line end or the end of the text.
    CsvRow row;
    row.line = line;
    std::string field;
    bool done = false;
    while (!done) {
      if (i < n && text[i] == '"') {  // quoted field
        const int64_t start_line = line;
        ++i;
        for (;;) {
          DERMIS_CHECK(i < n, "{}: line {}: a quoted field starts here but its closing '\"' is missing; fix the quoting",
                       path, start_line);
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n' || (c == '\r' && !(i + 1 < n && text[i + 1] == '\n'))) ++line;
          field += c;
          ++i;
        }
        // Spaces may follow the closing quote; anything else is malformed.
        while (i < n && (text[i] == ' ' || text[i] == '\t') && text[i] != delimiter) ++i;
        DERMIS_CHECK(i >= n || text[i] == delimiter || text[i] == '\n' || text[i] == '\r',
                     "{}: line {}: unexpected character '{}' after a closing quote; quote the whole field", path, line,
                     text[i]);
      } else {
        while (i < n && text[i] != delimiter && text[i] != '\n' && text[i] != '\r') field += text[i++];
      }
      row.fields.push_back(std::move(field));
      field.clear();
      if (i >= n) {
        done = true;
      } else if (text[i] == delimiter) {
        ++i;
      } else {  // line end: \n, \r\n or \r
        if (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
        ++i;
        ++line;
        done = true;
      }
    }
    if (blank(row.fields)) continue;
    if (!have_header) {
      for (auto& f : row.fields) t.header.push_back(trim(f));
      t.header_line = row.line;
      have_header = true;
      continue;
    }
    DERMIS_CHECK(row.fields.size() == t.header.size(),
                 "{}: line {}: {} fields, but the header (line {}) has {} columns; check for a missing value or an "
                 "unquoted '{}' in a field",
                 path, row.line, row.fields.size(), t.header_line, t.header.size(), delimiter);
    t.rows.push_back(std::move(row));
  }
  DERMIS_CHECK(have_header, "{}: the file is empty (no header line); expected a CSV file with a header", path);
  return t;
}

CsvTable read_csv(const std::string& path, char delimiter) {
  std::ifstream in(path, std::ios::binary);
  DERMIS_CHECK(in.good(), "cannot open '{}': {}; check the path", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  DERMIS_CHECK(!in.bad(), "cannot read '{}': {}", path, std::strerror(errno));
  return parse_csv(ss.str(), path, delimiter);
}

}  // namespace dermis::datasets
