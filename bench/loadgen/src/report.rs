//! Markdown tables from the JSON lines of many runs: for every case (a scenario variant), one row per figure, one
//! column per server with the median over runs, then the baseline's ratio to each other server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::stats::median;

#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Files of JSON lines written by the scenarios (other lines are skipped).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Column order, comma-separated; the first is the baseline of the ratios. Default: order of appearance.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
}

type Line = Map<String, Value>;

/// The figures shown per scenario, in order, with how they read.
fn rows(scenario: &str, lines: &[&Line]) -> Vec<(String, &'static str)> {
    let fixed: &[(&str, &str)] = match scenario {
        "fanout" => &[
            ("p50_ms", "ms, lower is better"),
            ("p99_ms", "ms, lower is better"),
            ("max_ms", "ms, lower is better"),
            ("delivered_fraction", "within the deadline"),
            ("server_peak_rss_mib", "MiB, lower is better"),
            ("server_cpu_s", "s, lower is better"),
            ("connect_s", "s to connect the readers"),
        ],
        "throughput" => &[
            ("applied_per_s", "higher is better"),
            ("delivered_per_s", "higher is better"),
            ("server_cpu_s", "s over the interval"),
            ("applied_per_server_cpu_s", "higher is better"),
            ("server_peak_rss_mib", "MiB"),
        ],
        "replay" => &[
            ("edits_per_s", "higher is better"),
            ("seconds", "to the final text"),
            ("finished", "runs that reached the final text"),
            ("observed_fraction", "of the updates"),
            ("server_cpu_s", "s"),
            ("server_peak_rss_mib", "MiB"),
        ],
        "cold-fill" => &[("seconds", "s to write the history"), ("updates", "updates sent")],
        "cold-measure" => &[
            ("sync_ms", "ms to a full sync after a restart, lower is better"),
            ("connect_ms", "ms to the upgrade"),
            ("warm_sync_ms", "ms, a second client"),
            ("server_rss_mib", "MiB after loading"),
        ],
        "limit" => &[
            ("apply_edits_per_s", "updates applied per s"),
            ("local_edits_per_s", "local edits per s"),
            ("encode_edits_per_s", "edits encoded per s"),
        ],
        _ => &[],
    };
    let mut out: Vec<(String, &'static str)> = fixed.iter().map(|(k, d)| (k.to_string(), *d)).collect();
    if scenario == "idle" {
        // One group of rows per step: keys such as kib_per_conn_5000.
        let mut steps: Vec<u64> = lines
            .iter()
            .flat_map(|l| l.keys())
            .filter_map(|k| k.strip_prefix("kib_per_conn_")?.parse().ok())
            .collect();
        steps.sort_unstable();
        steps.dedup();
        for step in steps {
            out.push((format!("kib_per_conn_{step}"), "KiB of server RSS per connection, lower is better"));
            out.push((format!("connect_s_{step}"), "s to connect them all"));
            out.push((format!("client_kib_per_conn_{step}"), "KiB of load-generator RSS per connection"));
        }
        out.push(("errors".into(), "connections that failed"));
        out.push(("dropped_by_server".into(), "connections the server closed"));
    }
    out.push(("client_cpu_s".into(), "load generator's own CPU s"));
    out.push(("other_cpu_s".into(), "CPU s of everything else on the machine meanwhile"));
    out.push(("wall_s".into(), "s"));
    out
}

/// Renders one cell: the median of the numbers, with the count of runs when some failed or are missing.
fn cell(lines: &[&Line], key: &str, runs: usize) -> (String, Option<f64>) {
    if lines.is_empty() {
        return ("–".into(), None);
    }
    if key == "finished" {
        let yes = lines.iter().filter(|l| l.get(key) == Some(&Value::Bool(true))).count();
        return (format!("{yes}/{}", lines.len()), None);
    }
    let values: Vec<f64> = lines.iter().filter_map(|l| l.get(key)?.as_f64()).collect();
    let Some(m) = median(&values) else {
        return ("–".into(), None);
    };
    let mut text = format_number(m);
    if values.len() < runs {
        let _ = write!(text, " ({}/{runs})", values.len());
    }
    (text, Some(m))
}

/// The median over runs of `baseline / other`, each ratio taken within one run (same machine state), so noise from
/// other work on the machine cancels out better than in a ratio of medians.
fn run_ratio(baseline: &[&Line], other: &[&Line], key: &str, limit: Option<f64>) -> Option<f64> {
    let value = |l: &Line| -> Option<f64> {
        if key == "fraction_of_limit" {
            return Some(l.get("edits_per_s")?.as_f64()? / limit?);
        }
        l.get(key)?.as_f64()
    };
    let ratios: Vec<f64> = baseline
        .iter()
        .filter_map(|b| {
            let o = other.iter().find(|o| o.get("run") == b.get("run"))?;
            let (b, o) = (value(b)?, value(o)?);
            (o != 0.0).then_some(b / o)
        })
        .collect();
    median(&ratios)
}

fn format_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{:.0}", v)
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn run(args: &Args) -> Result<()> {
    print!("{}", render(&read_lines(&args.files)?, &args.labels));
    Ok(())
}

fn read_lines(files: &[PathBuf]) -> Result<Vec<Line>> {
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        lines.extend(text.lines().filter_map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }));
    }
    Ok(lines)
}

/// The Markdown for all cases, in order of first appearance.
pub fn render(lines: &[Line], label_order: &[String]) -> String {
    let text = |l: &Line, k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut cases: Vec<String> = Vec::new();
    let mut labels: Vec<String> = label_order.to_vec();
    for l in lines {
        let case = text(l, "case");
        if !cases.contains(&case) {
            cases.push(case);
        }
        let label = text(l, "label");
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    // The in-process limit, for "fraction of the limit" under replays.
    let limit = median(
        &lines
            .iter()
            .filter(|l| text(l, "scenario") == "limit")
            .filter_map(|l| l["apply_edits_per_s"].as_f64())
            .collect::<Vec<_>>(),
    );

    let mut out = String::new();
    for case in &cases {
        let in_case: Vec<&Line> = lines.iter().filter(|l| &text(l, "case") == case).collect();
        let scenario = text(in_case[0], "scenario");
        let present: Vec<&String> =
            labels.iter().filter(|lab| in_case.iter().any(|l| &&text(l, "label") == lab)).collect();
        let by_label: BTreeMap<&str, Vec<&Line>> = present
            .iter()
            .map(|lab| {
                let ok: Vec<&Line> = in_case
                    .iter()
                    .copied()
                    .filter(|l| &text(l, "label") == *lab && !l.contains_key("error"))
                    .collect();
                (lab.as_str(), ok)
            })
            .collect();
        let runs = |lab: &str| in_case.iter().filter(|l| text(l, "label") == lab).count();

        let _ = writeln!(out, "\n#### {case}\n");
        let mut header = String::from("| figure |");
        let mut rule = String::from("|---|");
        for lab in &present {
            let _ = write!(header, " {lab} |");
            rule.push_str("---:|");
        }
        let baseline = present.first().map(|s| s.as_str());
        for lab in present.iter().skip(1) {
            let _ = write!(header, " {} ÷ {lab} |", baseline.unwrap_or(""));
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");

        let mut table_rows = rows(&scenario, &in_case);
        if scenario == "replay" && limit.is_some() {
            table_rows.insert(1, ("fraction_of_limit".into(), "of the in-process limit (yrs alone)"));
        }
        for (key, what) in table_rows {
            let mut cells = Vec::new();
            for lab in &present {
                let lines = &by_label[lab.as_str()];
                let (text, value) = if key == "fraction_of_limit" {
                    let (_, rate) = cell(lines, "edits_per_s", runs(lab));
                    match (rate, limit) {
                        (Some(r), Some(lim)) if lim > 0.0 => (format!("{:.3}", r / lim), Some(r / lim)),
                        _ => ("–".into(), None),
                    }
                } else {
                    cell(lines, &key, runs(lab))
                };
                cells.push((text, value));
            }
            if cells.iter().all(|(t, _)| t == "–") {
                continue;
            }
            let mut row = format!("| {key} ({what}) |");
            for (t, _) in &cells {
                let _ = write!(row, " {t} |");
            }
            for lab in present.iter().skip(1) {
                let ratio = if key == "finished" {
                    None
                } else {
                    run_ratio(&by_label[present[0].as_str()], &by_label[lab.as_str()], &key, limit)
                };
                let _ = write!(row, " {} |", ratio.map_or("–".into(), |r| format!("{r:.2}")));
            }
            let _ = writeln!(out, "{row}");
        }
        let errors: Vec<String> = in_case
            .iter()
            .filter_map(|l| {
                Some(format!("{} run {}: {}", text(l, "label"), l.get("run")?, l.get("error")?.as_str()?))
            })
            .collect();
        for e in errors {
            let _ = writeln!(out, "\n- error: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> Line {
        match serde_json::from_str(json).expect("json") {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn medians_and_ratios() {
        let lines = vec![
            line(
                r#"{"scenario":"fanout","case":"fanout-100","label":"tandem","run":1,"p99_ms":1.0,"client_cpu_s":1}"#,
            ),
            line(
                r#"{"scenario":"fanout","case":"fanout-100","label":"tandem","run":2,"p99_ms":3.0,"client_cpu_s":1}"#,
            ),
            line(
                r#"{"scenario":"fanout","case":"fanout-100","label":"ref","run":1,"p99_ms":4.0,"client_cpu_s":2}"#,
            ),
            line(r#"{"scenario":"fanout","case":"fanout-100","label":"ref","run":2,"error":"boom"}"#),
        ];
        let md = render(&lines, &[]);
        assert!(md.contains("#### fanout-100"), "{md}");
        assert!(md.contains("| p99_ms (ms, lower is better) | 2.00 | 4.00 (1/2) | 0.25 |"), "{md}");
        assert!(md.contains("error: ref run 2: boom"), "{md}");
    }
}
