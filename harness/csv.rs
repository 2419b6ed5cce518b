//! The one CSV format of the harness's tables (`runs.csv`, `tenants.csv`, `sweep.csv`,
//! `soak.csv`): a header line of column names, then a line per row; a field that holds a
//! comma, a quote or a line break is quoted, its quotes doubled (RFC 4180). [`Table`] writes
//! a table, [`records`] reads one back. How each value is formatted is the table's own.

use std::borrow::Cow;
use std::fmt::Display;

/// A CSV table being written.
#[derive(Debug)]
pub struct Table {
    text: String,
    columns: usize,
}

impl Table {
    /// A table whose header is `columns`, comma-separated names.
    pub fn new(columns: &str) -> Table {
        let mut t = Table { text: String::new(), columns: columns.split(',').count() };
        t.line(columns.split(',').map(field));
        t
    }

    /// Appends a row: one value per column, each as it displays, quoted where it must be.
    pub fn row(&mut self, values: &[&dyn Display]) {
        debug_assert_eq!(values.len(), self.columns, "a row of {} values for {} columns", values.len(), self.columns);
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        self.line(values.iter().map(|v| field(v)));
    }

    fn line<'a>(&mut self, fields: impl Iterator<Item = Cow<'a, str>>) {
        for (i, f) in fields.enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(&f);
        }
        self.text.push('\n');
    }

    /// The table's text.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// `v` as a CSV field: as it is, or quoted with its quotes doubled where it holds a comma, a
/// quote or a line break.
fn field(v: &str) -> Cow<'_, str> {
    if v.contains([',', '"', '\n']) {
        Cow::Owned(format!("\"{}\"", v.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(v)
    }
}

/// The records of CSV `text`, each with the number of the line it starts on (from 1) and its
/// fields unquoted; a blank line is a record of one empty (or blank) field.
pub fn records(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut records = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, mut line)) = lines.next() {
        let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
        loop {
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '"' if quoted && chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' if quoted => quoted = false,
                    '"' if field.is_empty() => quoted = true,
                    ',' if !quoted => fields.push(std::mem::take(&mut field)),
                    c => field.push(c),
                }
            }
            // A quoted line break: the record goes on on the next line.
            match quoted.then(|| lines.next()).flatten() {
                Some((_, next)) => {
                    field.push('\n');
                    line = next;
                }
                None => break,
            }
        }
        fields.push(field);
        records.push((n + 1, fields));
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_where_they_must_be_and_read_back() {
        let mut t = Table::new("name,n,note");
        t.row(&[&"plain", &1.5, &""]);
        t.row(&[&"a, b", &-2, &"say \"hi\"\nthen go"]);
        let text = t.into_text();
        assert_eq!(text, "name,n,note\nplain,1.5,\n\"a, b\",-2,\"say \"\"hi\"\"\nthen go\"\n");
        let back = records(&text);
        let row = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            back,
            [
                (1, row(&["name", "n", "note"])),
                (2, row(&["plain", "1.5", ""])),
                (3, row(&["a, b", "-2", "say \"hi\"\nthen go"])),
            ]
        );
        assert_eq!(records("a,b\n\n1,2\r\n"), [(1, row(&["a", "b"])), (2, row(&[""])), (3, row(&["1", "2"]))]);
        assert!(records("").is_empty());
    }
}
