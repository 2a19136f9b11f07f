//! How the CLI prints: aligned tables for people, the API's JSON for scripts.

use serde_json::Value;

use super::args::Output;

/// A table: a header row and rows of cells, printed with columns aligned.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(self.header.clone());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        if self.rows.is_empty() {
            out.push_str("(none)\n");
        }
        out
    }
}

/// Prints `json` as is (`--output json`) or the human form made by `human`.
pub fn print(output: Output, json: &Value, human: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string())
        ),
        Output::Table => print!("{}", human(json)),
    }
}

/// A JSON field as text for a cell: strings bare, null as `-`.
pub fn text(v: &Value, field: &str) -> String {
    cell(v.get(field))
}

pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| cell(Some(i)))
            .collect::<Vec<_>>()
            .join(" "),
        Some(other) => other.to_string(),
    }
}

/// `key: value` lines, aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    pairs
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

/// An array answer's items (an empty slice for anything else).
pub fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["ID", "STATUS"]);
        t.row(vec!["a-long-id".into(), "connected".into()]);
        t.row(vec!["b".into(), "error".into()]);
        assert_eq!(
            t.render(),
            "ID         STATUS\na-long-id  connected\nb          error\n"
        );
    }

    #[test]
    fn cells() {
        let v = serde_json::json!({"s": "x", "n": null, "a": ["p", "q"], "b": true});
        assert_eq!(text(&v, "s"), "x");
        assert_eq!(text(&v, "n"), "-");
        assert_eq!(text(&v, "missing"), "-");
        assert_eq!(text(&v, "a"), "p q");
        assert_eq!(text(&v, "b"), "true");
    }
}
