//! `report.html`: one self-contained page per run: the per-fold table, every fold's learning
//! curves (plotted with plotters as inline SVG), the out-of-fold confusion matrix and, after
//! `cv ensemble`, the comparison of fold models, averaged weights and the ensemble. It holds no
//! timestamps, so the same run gives the same page.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

/// One row of a fold's `history.csv`.
struct EpochRow {
    epoch: f64,
    train_loss: f64,
    train_accuracy: f64,
    valid_loss: f64,
    valid_accuracy: f64,
}

fn read_history(path: &Path) -> Result<Vec<EpochRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let at = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no {name} column", path.display()))
    };
    let (e, tl, ta, vl, va) = (
        at("epoch")?,
        at("train_loss")?,
        at("train_accuracy")?,
        at("valid_loss")?,
        at("valid_accuracy")?,
    );
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        let num = |i: usize| {
            record
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        rows.push(EpochRow {
            epoch: num(e) + 1.0,
            train_loss: num(tl),
            train_accuracy: num(ta),
            valid_loss: num(vl),
            valid_accuracy: num(va),
        });
    }
    Ok(rows)
}

/// A line chart of one metric for every fold: training thin, validation thick.
fn chart(
    title: &str,
    folds: &[(usize, Vec<EpochRow>)],
    train: fn(&EpochRow) -> f64,
    valid: fn(&EpochRow) -> f64,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let max_epoch = folds
            .iter()
            .flat_map(|(_, h)| h.iter().map(|r| r.epoch))
            .fold(1.0, f64::max);
        let values = folds
            .iter()
            .flat_map(|(_, h)| h.iter().flat_map(|r| [train(r), valid(r)]))
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(1.0..max_epoch.max(2.0), lo..hi + (hi - lo) * 0.05)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (k, history) in folds {
            let color = Palette99::pick(*k).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    history.iter().map(|r| (r.epoch, train(r))),
                    color.stroke_width(1),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .draw_series(LineSeries::new(
                    history.iter().map(|r| (r.epoch, valid(r))),
                    color.stroke_width(3),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(format!("fold {k}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Markdown table (as this crate writes them) as an HTML table.
fn markdown_table(md: &str) -> String {
    let mut html = String::from("<table>");
    for (i, line) in md.lines().filter(|l| l.starts_with('|')).enumerate() {
        if i == 1 {
            continue; // the |---| separator
        }
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for cell in line.trim_matches('|').split('|') {
            let _ = write!(html, "<{tag}>{}</{tag}>", escape(cell.trim()));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// Writes `<run>/report.html` from the files of the run folder.
pub fn write_report(run_dir: &Path) -> Result<()> {
    let name = run_dir
        .file_name()
        .map_or("run".into(), |n| n.to_string_lossy().into_owned());
    let mut html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>foldwise: {name}</title><style>\
         body{{font-family:sans-serif;max-width:1180px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}.charts{{display:flex;flex-wrap:wrap;gap:12px}}pre{{background:#f7f7f7;padding:1em;overflow:auto}}\
         </style></head><body><h1>foldwise run <code>{}</code></h1>",
        escape(&name)
    );
    if let Ok(config) = std::fs::read_to_string(run_dir.join("config.toml")) {
        let _ = write!(
            html,
            "<details><summary>Configuration</summary><pre>{}</pre></details>",
            escape(&config)
        );
    }
    if let Ok(summary) = std::fs::read_to_string(run_dir.join("summary.md")) {
        let (table, rest) = summary.split_once("\n\n").unwrap_or((&summary, ""));
        let _ = write!(
            html,
            "<h2>Folds (best epoch of each, on its validation samples)</h2>{}<p>{}</p>",
            markdown_table(table),
            escape(rest.trim())
        );
    }
    // Learning curves.
    let mut fold_numbers: Vec<usize> = std::fs::read_dir(run_dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("fold-")?.parse().ok())
        .collect();
    fold_numbers.sort_unstable();
    let mut folds = Vec::new();
    for k in fold_numbers {
        let path = run_dir.join(format!("fold-{k}/history.csv"));
        if path.exists() {
            folds.push((k, read_history(&path)?));
        }
    }
    if !folds.is_empty() {
        html.push_str("<h2>Learning curves</h2><p>Thin lines: training; thick lines: validation.</p><div class=\"charts\">");
        html.push_str(&chart("loss", &folds, |r| r.train_loss, |r| r.valid_loss)?);
        html.push_str(&chart(
            "accuracy",
            &folds,
            |r| r.train_accuracy,
            |r| r.valid_accuracy,
        )?);
        html.push_str("</div>");
    }
    // The out-of-fold confusion matrix.
    if let Ok(text) = std::fs::read_to_string(run_dir.join("summary.json")) {
        let summary: serde_json::Value = serde_json::from_str(&text)?;
        let oof = &summary["out_of_fold"];
        if let (Some(matrix), Some(per_class)) = (
            oof["confusion_matrix"].as_array(),
            oof["per_class"].as_array(),
        ) {
            let names: Vec<String> = per_class
                .iter()
                .map(|c| c["class"].as_str().unwrap_or("?").to_owned())
                .collect();
            let max = matrix
                .iter()
                .flat_map(|r| r.as_array().into_iter().flatten())
                .filter_map(|v| v.as_u64())
                .max()
                .unwrap_or(1)
                .max(1);
            html.push_str("<h2>Out-of-fold confusion matrix</h2><p>Rows: true class; columns: predicted.</p><table><tr><th></th>");
            for n in &names {
                let _ = write!(html, "<th>{}</th>", escape(n));
            }
            html.push_str("</tr>");
            for (row, name) in matrix.iter().zip(&names) {
                let _ = write!(html, "<tr><th>{}</th>", escape(name));
                for v in row.as_array().into_iter().flatten() {
                    let count = v.as_u64().unwrap_or(0);
                    let shade = 255 - (count * 180 / max) as u8;
                    let _ = write!(
                        html,
                        "<td style=\"background:rgb({shade},{shade},255)\">{count}</td>"
                    );
                }
                html.push_str("</tr>");
            }
            html.push_str("</table>");
        }
    }
    if let Ok(comparison) = std::fs::read_to_string(run_dir.join("ensemble/comparison.md")) {
        let (intro, table) = comparison.split_once("\n\n").unwrap_or(("", &comparison));
        let _ = write!(
            html,
            "<h2>Ensemble on the held-out samples</h2><p>{}</p>{}",
            escape(intro),
            markdown_table(table)
        );
    }
    html.push_str("</body></html>\n");
    let path = run_dir.join("report.html");
    cv_model::checkpoint::write_atomic(&path, |tmp| std::fs::write(tmp, &html))
        .with_context(|| format!("cannot write {}", path.display()))
}
