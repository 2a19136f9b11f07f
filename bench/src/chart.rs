//! The PNG chart of the data-plane ratios: per variant, throughput and p99 as ratios to the
//! baseline of the same round, with the targets as lines. Text is drawn with
//! ab_glyph from a TTF file of the system (Debian's fonts-dejavu-core), so no font library
//! is needed; without a font the chart is skipped with a message.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn register_font() -> Result<()> {
    let path = FONTS
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow!("no TTF font found (looked for {FONTS:?}; apt-get install fonts-dejavu-core)")
        })?;
    // plotters keeps the font for the life of the process.
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    register_font_bytes(bytes)
}

fn register_font_bytes(bytes: &'static [u8]) -> Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("the font file is not a usable TTF"))
}

/// One variant's bars: its ratios to the baseline.
pub struct Bars {
    pub name: String,
    pub rps_ratio: f64,
    pub p99_ratio: f64,
    pub cpu_ratio: f64,
}

/// Reads the bars and the unavailable variants from a `latest.json`, to draw its chart again
/// without measuring (`credmgr-bench chart`).
pub fn from_json(results: &serde_json::Value) -> (Vec<Bars>, Vec<(String, String)>) {
    let mut bars = Vec::new();
    let mut missing = Vec::new();
    if let Some(dp) = results["dataplane"].as_object() {
        for (name, v) in dp {
            if name == "baseline" {
                continue;
            }
            if v.is_null() {
                let reason = results["not_measured"][format!("dataplane.{name}")]
                    .as_str()
                    .unwrap_or("not measured")
                    .to_owned();
                missing.push((name.clone(), reason));
                continue;
            }
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            bars.push(Bars {
                name: name.clone(),
                rps_ratio: f("rps_ratio"),
                p99_ratio: f("p99_ratio"),
                cpu_ratio: f("cpu_ratio"),
            });
        }
    }
    // The order of the issue, not the JSON's alphabetical one.
    let rank = |n: &str| crate::dataplane::VARIANTS.iter().position(|v| *v == n);
    bars.sort_by_key(|b| rank(&b.name));
    (bars, missing)
}

pub fn draw(
    bars: &[Bars],
    unavailable: &[(String, String)],
    title: &str,
    path: &Path,
) -> Result<()> {
    register_font()?;
    let n = bars.len().max(1) as f64;
    // Headroom above the tallest bar for the legend.
    let ymax = bars
        .iter()
        .flat_map(|b| [b.rps_ratio, b.p99_ratio, b.cpu_ratio])
        .filter(|x| x.is_finite())
        .fold(1.3f64, f64::max)
        * 1.45;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n, 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ratio to baseline (same round)")
        .label_style(("sans-serif", 15))
        .draw()?;
    let rps_colour = RGBColor(52, 101, 164);
    let p99_colour = RGBColor(230, 126, 34);
    let cpu_colour = RGBColor(115, 115, 115);
    type Pick = fn(&Bars) -> f64;
    let series: [(Pick, f64, RGBColor, &str); 3] = [
        (
            |b| b.rps_ratio,
            0.08,
            rps_colour,
            "throughput (req/s) ratio, target >= 0.95",
        ),
        (
            |b| b.p99_ratio,
            0.37,
            p99_colour,
            "p99 latency ratio, target <= 1.10",
        ),
        (
            |b| b.cpu_ratio,
            0.66,
            cpu_colour,
            "Envoy CPU time per request ratio (lower is better)",
        ),
    ];
    for (pick, offset, colour, label) in series {
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let x = i as f64 + offset;
                let y = if pick(b).is_finite() { pick(b) } else { 0.0 };
                Rectangle::new([(x, 0.0), (x + 0.26, y)], colour.filled())
            }))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
    }
    for (y, colour) in [(1.0, BLACK), (0.95, rps_colour), (1.10, p99_colour)] {
        chart.draw_series(LineSeries::new(
            [(0.0, y), (n, y)],
            colour.stroke_width(if y == 1.0 { 1 } else { 2 }),
        ))?;
    }
    let value_style = ("sans-serif", 14).into_font().color(&BLACK);
    let mut values = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        for (dx, v) in [
            (0.10, b.rps_ratio),
            (0.39, b.p99_ratio),
            (0.68, b.cpu_ratio),
        ] {
            if v.is_finite() {
                let at = (i as f64 + dx, v + ymax * 0.03);
                values.push(Text::new(format!("{v:.2}"), at, value_style.clone()));
            }
        }
    }
    chart.draw_series(values)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    // Variant names under their bars, placed in pixels below the plotting area.
    let name_style = ("sans-serif", 16).into_font().color(&BLACK);
    for (i, b) in bars.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.25, 0.0));
        root.draw(&Text::new(
            b.name.clone(),
            (px, py + 10),
            name_style.clone(),
        ))?;
    }
    // Variants that could not be measured are named, not silently left out.
    let note_style = ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90));
    for (i, (name, reason)) in unavailable.iter().enumerate() {
        root.draw(&Text::new(
            format!("{name}: {reason}"),
            (20, 580 - 18 * (unavailable.len() - 1 - i) as i32),
            note_style.clone(),
        ))?;
    }
    root.present()?;
    Ok(())
}
