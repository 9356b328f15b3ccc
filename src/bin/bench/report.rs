//! Samples and their summaries, and the printed table.

use std::fmt::Write as _;
use std::time::Duration;

/// Repeated measurements of one quantity.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new() -> Self {
        Samples(Vec::new())
    }

    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        Samples(values.into_iter().collect())
    }

    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Nearest-rank percentile (`p` in 0..=100); NaN when empty.
    pub fn percentile(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// `median [min–max]`, or just the value for a single sample.
    pub fn summary(&self, decimals: usize, unit: &str) -> String {
        if self.0.len() <= 1 {
            format!("{:.*} {unit}", decimals, self.median())
        } else {
            format!(
                "{:.*} [{:.*}–{:.*}] {unit}",
                decimals,
                self.median(),
                decimals,
                self.min(),
                decimals,
                self.max()
            )
        }
    }
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// Whether a row met its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    Missed,
    /// No target: the figure is reported only.
    Reported,
    Error(String),
}

impl Verdict {
    pub fn check(met: bool) -> Self {
        if met {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Reported => "—",
            Verdict::Error(_) => "ERROR",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Line {
    pub row: String,
    pub result: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Line {
    pub fn new(row: impl Into<String>, result: impl Into<String>) -> Self {
        Line {
            row: row.into(),
            result: result.into(),
            baseline: "—".into(),
            ratio: "—".into(),
            target: "—".into(),
            verdict: Verdict::Reported,
        }
    }

    pub fn baseline(mut self, baseline: impl Into<String>) -> Self {
        self.baseline = baseline.into();
        self
    }

    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = format!("{ratio:.2}×");
        self
    }

    pub fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        self.verdict = Verdict::check(met);
        self
    }

    pub fn error(row: impl Into<String>, message: String) -> Self {
        Line {
            verdict: Verdict::Error(message),
            ..Line::new(row, "—")
        }
    }
}

/// Everything measured, printed at the end.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<Line>,
    notes: Vec<String>,
}

impl Report {
    pub fn add(&mut self, line: Line) {
        eprintln!(
            "bench: {} → {} ({})",
            line.row,
            line.result,
            line.verdict.label()
        );
        self.lines.push(line);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn errors(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l.verdict, Verdict::Error(_)))
            .count()
    }

    /// A Markdown table (pastes into an issue as is), then the notes and errors.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let header = [
            "row",
            "result",
            "baseline (same run)",
            "ratio",
            "target",
            "verdict",
        ];
        let rows: Vec<[&str; 6]> = self
            .lines
            .iter()
            .map(|l| {
                [
                    l.row.as_str(),
                    l.result.as_str(),
                    l.baseline.as_str(),
                    l.ratio.as_str(),
                    l.target.as_str(),
                    l.verdict.label(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let render_row = |cells: &[&str; 6]| {
            let mut s = String::from("|");
            for (cell, w) in cells.iter().zip(widths) {
                let pad = w.saturating_sub(cell.chars().count());
                let _ = write!(s, " {cell}{} |", " ".repeat(pad));
            }
            s
        };
        out.push_str(&render_row(&header));
        out.push('\n');
        out.push('|');
        for w in widths {
            let _ = write!(out, "{}|", "-".repeat(w + 2));
        }
        out.push('\n');
        for row in &rows {
            out.push_str(&render_row(row));
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push_str("\nNotes:\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        let errors: Vec<&Line> = self
            .lines
            .iter()
            .filter(|l| matches!(l.verdict, Verdict::Error(_)))
            .collect();
        if !errors.is_empty() {
            out.push_str("\nErrors:\n");
            for line in errors {
                if let Verdict::Error(message) = &line.verdict {
                    let _ = writeln!(out, "- {}: {message}", line.row);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = Samples::of((1..=100).map(f64::from));
        assert_eq!(s.percentile(50.0), 50.0);
        assert_eq!(s.percentile(99.0), 99.0);
        assert_eq!(s.percentile(100.0), 100.0);
        assert_eq!(Samples::of([7.0]).percentile(99.0), 7.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_middle_mean() {
        assert_eq!(Samples::of([4.0, 1.0, 3.0, 2.0]).median(), 2.5);
        assert_eq!(Samples::of([3.0, 1.0, 2.0]).median(), 2.0);
    }

    #[test]
    fn the_table_lines_up_its_columns() {
        let mut report = Report::default();
        report.add(Line::new("a", "1").target("≤ 2", true));
        report.add(Line::new("longer row", "10 ms"));
        let table = report.render();
        let widths: Vec<usize> = table.lines().take(4).map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
    }
}
