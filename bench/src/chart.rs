//! The PNG chart of the data-plane ratios: per variant, throughput and p99 as ratios to the
//! baseline of the same round, with the targets as lines. Text is drawn with
//! ab_glyph from a TTF file of the system (Debian's fonts-dejavu-core), so no font library
//! is needed; without a font the chart is skipped with a message.

use crate::dataplane::Outcome;
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

pub fn draw(out: &Outcome, title: &str, path: &Path) -> Result<()> {
    register_font()?;
    let bars: Vec<(&str, f64, f64)> = out
        .variants
        .iter()
        .filter(|(name, _)| *name != "baseline")
        .filter_map(|(name, s)| s.as_ref().map(|s| (*name, s.rps_ratio, s.p99_ratio)))
        .collect();
    let n = bars.len().max(1) as f64;
    let ymax = bars
        .iter()
        .flat_map(|(_, a, b)| [*a, *b])
        .filter(|x| x.is_finite())
        .fold(1.3f64, f64::max)
        * 1.1;
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
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, rps, _))| {
            let x = i as f64;
            Rectangle::new([(x + 0.12, 0.0), (x + 0.48, *rps)], rps_colour.filled())
        }))?
        .label("throughput (req/s) ratio, target >= 0.95")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], rps_colour.filled()));
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, _, p99))| {
            let x = i as f64;
            Rectangle::new([(x + 0.52, 0.0), (x + 0.88, *p99)], p99_colour.filled())
        }))?
        .label("p99 latency ratio, target <= 1.10")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], p99_colour.filled()));
    for (y, colour) in [(1.0, BLACK), (0.95, rps_colour), (1.10, p99_colour)] {
        chart.draw_series(LineSeries::new(
            [(0.0, y), (n, y)],
            colour.stroke_width(if y == 1.0 { 1 } else { 2 }),
        ))?;
    }
    let value_style = ("sans-serif", 14).into_font().color(&BLACK);
    chart.draw_series(bars.iter().enumerate().flat_map(|(i, (_, rps, p99))| {
        let x = i as f64;
        [
            Text::new(
                format!("{rps:.2}"),
                (x + 0.18, rps + ymax * 0.03),
                value_style.clone(),
            ),
            Text::new(
                format!("{p99:.2}"),
                (x + 0.58, p99 + ymax * 0.03),
                value_style.clone(),
            ),
        ]
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    // Variant names under their bars, placed in pixels below the plotting area.
    let name_style = ("sans-serif", 16).into_font().color(&BLACK);
    for (i, (name, _, _)) in bars.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.2, 0.0));
        root.draw(&Text::new(
            name.to_string(),
            (px, py + 10),
            name_style.clone(),
        ))?;
    }
    // Variants that could not be measured are named, not silently left out.
    let note_style = ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90));
    for (i, (name, reason)) in out.unavailable.iter().enumerate() {
        root.draw(&Text::new(
            format!("{name}: {reason}"),
            (20, 580 - 18 * (out.unavailable.len() - 1 - i) as i32),
            note_style.clone(),
        ))?;
    }
    root.present()?;
    Ok(())
}
