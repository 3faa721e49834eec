//! An SVG chart per scenario: the API request rate each strategy sent, against the limit.

use plotters::prelude::*;

use crate::Report;
use crate::scenario::Scenario;

/// Seconds averaged into one point.
const BUCKET: usize = 5;

fn rate(series: &[u32], bucket: usize) -> Vec<(f64, f64)> {
    series
        .chunks(bucket)
        .enumerate()
        .map(|(i, c)| {
            let t = (i * bucket) as f64 + c.len() as f64 / 2.0;
            (t, c.iter().map(|&n| f64::from(n)).sum::<f64>() / c.len() as f64)
        })
        .collect()
}

const COLOURS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(148, 103, 189),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
];

/// Renders `reports` of `scenario` as an SVG document: requests per second that reached the
/// server (5 s averages) per strategy, and the limit as a dashed line.
pub fn svg(scenario: &Scenario, reports: &[&Report]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let limit = scenario.limit_per_sec();
        let secs = scenario.duration as f64 / 1000.0;
        let curves: Vec<(&str, Vec<(f64, f64)>)> =
            reports.iter().map(|r| (r.strategy, rate(&r.series.sent, BUCKET))).collect();
        let peak =
            curves.iter().flat_map(|(_, c)| c.iter().map(|&(_, y)| y)).fold(limit * 1.5, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: API requests/s sent ({BUCKET} s averages) vs the limit",
                    scenario.name
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..secs, 0f64..peak * 1.05)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("requests/s")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, limit), (secs, limit)],
                6,
                4,
                BLACK.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("limit ({limit:.1}/s)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        for (i, (name, curve)) in curves.into_iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(curve, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
