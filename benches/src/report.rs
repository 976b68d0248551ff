//! The summary: figures, budgets, `summary.json` and the table on stdout.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::stats::Spread;

/// One budget and how the run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    /// What is limited, e.g. `cold_start_ratio.login`.
    pub name: String,
    /// The measured value compared (a median where the figure is a spread).
    pub value: Option<f64>,
    /// The limit (inclusive).
    pub limit: f64,
    /// `<=` or `==`.
    pub op: &'static str,
    /// Whether the value depends on timing (not enforced by `--quick`).
    pub timing: bool,
    /// Passed, failed, or not measured.
    pub status: &'static str,
    /// Why, when it failed or was skipped.
    pub note: String,
}

impl Budget {
    /// `value <= limit`.
    pub fn at_most(name: &str, value: Option<f64>, limit: f64, timing: bool) -> Self {
        let status = match value {
            Some(v) if v <= limit => "pass",
            Some(_) => "FAIL",
            None => "not measured",
        };
        Self {
            name: name.to_owned(),
            value,
            limit,
            op: "<=",
            timing,
            status,
            note: String::new(),
        }
    }

    /// `value == limit`.
    pub fn exactly(name: &str, value: Option<f64>, limit: f64) -> Self {
        let status = match value {
            Some(v) if (v - limit).abs() < 1e-9 => "pass",
            Some(_) => "FAIL",
            None => "not measured",
        };
        Self {
            name: name.to_owned(),
            value,
            limit,
            op: "==",
            timing: false,
            status,
            note: String::new(),
        }
    }

    /// Adds an explanation.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Everything the run measured, keyed like `summary.json`.
#[derive(Debug, Default)]
pub struct Summary {
    /// `figure -> key -> value` (a spread or a plain number or any JSON).
    pub figures: BTreeMap<String, BTreeMap<String, Value>>,
    /// Budgets checked.
    pub budgets: Vec<Budget>,
    /// Run facts (mode, machine, sample counts, notes).
    pub meta: BTreeMap<String, Value>,
}

impl Summary {
    /// Records a spread.
    pub fn spread(&mut self, figure: &str, key: &str, spread: Option<Spread>) {
        if let Some(s) = spread {
            self.put(figure, key, json!(s));
        }
    }

    /// Records any value.
    pub fn put(&mut self, figure: &str, key: &str, value: Value) {
        self.figures
            .entry(figure.to_owned())
            .or_default()
            .insert(key.to_owned(), value);
    }

    /// The median of a recorded spread, or the recorded number.
    pub fn median(&self, figure: &str, key: &str) -> Option<f64> {
        let value = self.figures.get(figure)?.get(key)?;
        value["median"].as_f64().or_else(|| value.as_f64())
    }

    /// The JSON written to `summary.json`.
    pub fn to_json(&self) -> Value {
        json!({
            "meta": self.meta,
            "figures": self.figures,
            "budgets": self.budgets,
        })
    }

    /// Whether every budget passed (`timing_too`: also the timing budgets).
    pub fn passed(&self, timing_too: bool) -> bool {
        self.budgets
            .iter()
            .filter(|b| timing_too || !b.timing)
            .all(|b| b.status != "FAIL")
    }

    /// The readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<44} {:>12} {:>25} {:>4}\n",
            "figure", "median", "spread p25..p75 [min..max]", "n"
        ));
        for (figure, values) in &self.figures {
            for (key, value) in values {
                let name = format!("{figure}.{key}");
                if let Some(median) = value["median"].as_f64() {
                    out.push_str(&format!(
                        "{:<44} {:>12} {:>25} {:>4}\n",
                        name,
                        fmt(median),
                        format!(
                            "{}..{} [{}..{}]",
                            fmt(value["p25"].as_f64().unwrap_or(f64::NAN)),
                            fmt(value["p75"].as_f64().unwrap_or(f64::NAN)),
                            fmt(value["min"].as_f64().unwrap_or(f64::NAN)),
                            fmt(value["max"].as_f64().unwrap_or(f64::NAN))
                        ),
                        value["n"].as_u64().unwrap_or(0)
                    ));
                } else if let Some(number) = value.as_f64() {
                    out.push_str(&format!("{:<44} {:>12}\n", name, fmt(number)));
                } else {
                    out.push_str(&format!("{:<44} {}\n", name, value));
                }
            }
        }
        out.push_str(&format!(
            "\n{:<40} {:>12} {:>3} {:>10}  {}\n",
            "budget", "value", "op", "limit", "status"
        ));
        for b in &self.budgets {
            out.push_str(&format!(
                "{:<40} {:>12} {:>3} {:>10}  {}{}{}\n",
                b.name,
                b.value.map(fmt).unwrap_or_else(|| "-".to_owned()),
                b.op,
                fmt(b.limit),
                b.status,
                if b.timing { " (timing)" } else { "" },
                if b.note.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", b.note)
                }
            ));
        }
        out
    }
}

fn fmt(value: f64) -> String {
    if !value.is_finite() {
        "-".to_owned()
    } else if value.abs() >= 1000.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_and_table() {
        let mut summary = Summary::default();
        summary.spread("cold_start_ms", "login", Spread::of(&[1.0, 2.0, 3.0]));
        summary.put("zip_bytes", "login", json!(1_500_000));
        summary.budgets.push(Budget::at_most(
            "cold_start_ratio.login",
            Some(2.5),
            2.0,
            true,
        ));
        summary
            .budgets
            .push(Budget::at_most("zip_bytes.login", Some(1.0), 2.0, false));
        summary
            .budgets
            .push(Budget::exactly("calls", Some(1.0), 1.0));
        assert_eq!(summary.median("cold_start_ms", "login"), Some(2.0));
        assert_eq!(summary.median("zip_bytes", "login"), Some(1_500_000.0));
        assert!(!summary.passed(true));
        assert!(summary.passed(false));
        let table = summary.table();
        assert!(table.contains("cold_start_ms.login"));
        assert!(table.contains("FAIL (timing)"));
    }
}
