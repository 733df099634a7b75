// A small, strict CSV reader for dataset metadata: RFC 4180 quoting ("a,b", "say ""hi"""), quoted
// newlines, LF / CRLF / CR line ends, a UTF-8 byte-order mark, blank lines (skipped). Every row must
// have as many fields as the header; anything else is one dermis::Error naming the file and line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dermis::datasets {

struct CsvRow {
  int64_t line = 0;                 // 1-based line in the file where the row starts
  std::vector<std::string> fields;  // as many as the header
};

struct CsvTable {
  std::string path;                 // for messages
  int64_t header_line = 0;
  std::vector<std::string> header;  // names with surrounding whitespace removed
  std::vector<CsvRow> rows;
  // Index of the column named `name` (case-insensitive), or -1.
  int column(const std::string& name) const;
};

// Reads the whole file. `delimiter` is ',' for CSV ('\t' for tab-separated files).
CsvTable read_csv(const std::string& path, char delimiter = ',');
// Same, from text in memory (`path` is only used in messages).
CsvTable parse_csv(const std::string& text, const std::string& path, char delimiter = ',');

// Removes leading and trailing spaces and tabs.
std::string trim(const std::string& s);

}  // namespace dermis::datasets
