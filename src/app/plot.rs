//! Pictures of a run as SVG files: the loss curves of training and the forecast of a
//! regression model after its history.
//!
//! Drawn with plotters' SVG backend and no font files: text is written as SVG `<text>`
//! elements that the viewer renders with its own sans-serif font, and plotters lays the
//! labels out from an estimate of their width. Both plots skip points that are NaN or
//! infinite (and values beyond ±1e300, whose differences would overflow), and draw a valid
//! picture with axes and a note when nothing is left to draw.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

const SIZE: (u32, u32) = (800, 480);
const BLUE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const RED: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const ORANGE: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const GREEN: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const GREY: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);
/// Series with at most this many points also get a dot per point, so that a single
/// point or a sparse validation curve stays visible.
const MARKED_POINTS: usize = 30;
/// Larger magnitudes are skipped like non-finite values.
const LARGEST: f64 = 1e300;

/// The forecast plot shows at most this many history points, or 10 per forecast step
/// when the forecast is longer than a tenth of it.
pub const FORECAST_HISTORY: usize = 500;

/// Where the loss plot of a checkpoint goes: `run.safetensors` → `run.svg`.
pub fn loss_plot_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("svg")
}

/// Draws training and validation loss against the step into an SVG file at `path`.
///
/// `y_label` names the loss and its units (e.g. `"loss (nats/char)"`). Either series may
/// be empty; non-finite losses are skipped.
pub fn loss_plot(
    path: &Path,
    title: &str,
    y_label: &str,
    train: &[(u64, f32)],
    validation: &[(u64, f32)],
) -> Result<()> {
    let points = |s: &[(u64, f32)]| s.iter().map(|&(x, y)| (x, y as f64)).collect();
    let series = [
        Series {
            name: "training",
            color: BLUE,
            points: points(train),
            lead_in: None,
        },
        Series {
            name: "validation",
            color: RED,
            points: points(validation),
            lead_in: None,
        },
    ];
    draw(path, title, "step", y_label, &series)
}

/// A series model's validation errors in the target's units, per validation step: the
/// model's and the naive and seasonal naive forecasts' of the same rows.
pub struct ErrorCurves {
    pub what: &'static str,
    pub model: Vec<(u64, f64)>,
    pub naive: Vec<(u64, f64)>,
    pub seasonal_naive: Vec<(u64, f64)>,
}

/// [`loss_plot`] with a second panel below: the validation errors beside the baselines'.
pub fn loss_plot_with_errors(
    path: &Path,
    title: &str,
    y_label: &str,
    train: &[(u64, f32)],
    validation: &[(u64, f32)],
    errors: ErrorCurves,
) -> Result<()> {
    let points = |s: &[(u64, f32)]| s.iter().map(|&(x, y)| (x, y as f64)).collect();
    let curve = |name, color, points| Series {
        name,
        color,
        points,
        lead_in: None,
    };
    let losses = [
        curve("training", BLUE, points(train)),
        curve("validation", RED, points(validation)),
    ];
    let errs = [
        curve("model", RED, errors.model),
        curve("naive", GREY, errors.naive),
        curve("seasonal naive", GREEN, errors.seasonal_naive),
    ];
    let panels = [
        Panel {
            title,
            x_label: "step",
            y_label,
            series: &losses,
        },
        Panel {
            title: "validation error beside the baselines (same rows)",
            x_label: "step",
            y_label: errors.what,
            series: &errs,
        },
    ];
    draw_panels(path, &panels)
}

/// Draws a history of values at time steps 1..=n and a forecast continuing it at
/// n+1..=n+h into an SVG file at `path`.
///
/// Only the last `max(FORECAST_HISTORY, 10·h)` history points are shown, so the forecast
/// stays readable after a long history while keeping enough context to judge it; the x
/// axis keeps the original time steps. The forecast line starts from the last shown
/// history point so the two read as one curve. Non-finite values are skipped.
pub fn forecast_plot(
    path: &Path,
    title: &str,
    y_label: &str,
    history: &[f64],
    forecast: &[f64],
) -> Result<()> {
    forecast_plot_with(path, title, y_label, history, forecast, &[])
}

/// [`forecast_plot`] with other forecasts of the same steps drawn beside it (the naive and
/// seasonal naive baselines): each a name and its values.
pub fn forecast_plot_with(
    path: &Path,
    title: &str,
    y_label: &str,
    history: &[f64],
    forecast: &[f64],
    others: &[(&'static str, &[f64])],
) -> Result<()> {
    let n = history.len();
    let shown = n.min(FORECAST_HISTORY.max(forecast.len().saturating_mul(10)));
    let first = n - shown;
    let history: Vec<(u64, f64)> = history[first..]
        .iter()
        .enumerate()
        .map(|(i, &y)| ((first + i + 1) as u64, y))
        .collect();
    let forecast: Vec<(u64, f64)> = forecast
        .iter()
        .enumerate()
        .map(|(i, &y)| ((n + i + 1) as u64, y))
        .collect();
    let lead_in = history.iter().rev().find(|p| plottable(p.1)).copied();
    let mut series = vec![
        Series {
            name: "history",
            color: BLUE,
            points: history,
            lead_in: None,
        },
        Series {
            name: "forecast",
            color: ORANGE,
            points: forecast,
            lead_in,
        },
    ];
    for (k, (name, values)) in others.iter().enumerate() {
        series.push(Series {
            name,
            color: [GREY, GREEN][k % 2],
            points: values
                .iter()
                .enumerate()
                .map(|(i, &y)| ((n + i + 1) as u64, y))
                .collect(),
            lead_in,
        });
    }
    draw(path, title, "time step", y_label, &series)
}

struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(u64, f64)>,
    /// A point drawn before the series' own (joining it to the previous series) but not
    /// counted as one of its points.
    lead_in: Option<(u64, f64)>,
}

fn plottable(y: f64) -> bool {
    y.is_finite() && y.abs() <= LARGEST
}

/// One chart of a picture.
struct Panel<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
}

fn draw(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    draw_panels(
        path,
        &[Panel {
            title,
            x_label,
            y_label,
            series,
        }],
    )
}

/// Renders the panels one above the other into a string first, so that a failure leaves
/// no half-written file, then writes the file in one go.
fn draw_panels(path: &Path, panels: &[Panel<'_>]) -> Result<()> {
    let finite = |series: &[Series]| -> Vec<Series> {
        series
            .iter()
            .map(|s| Series {
                points: s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| plottable(p.1))
                    .collect(),
                lead_in: s.lead_in.filter(|p| plottable(p.1)),
                name: s.name,
                color: s.color,
            })
            .collect()
    };
    let mut svg = String::new();
    {
        let size = (SIZE.0, SIZE.1 * panels.len() as u32);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let areas = root.split_evenly((panels.len(), 1));
        for (area, p) in areas.iter().zip(panels) {
            render(area, p.title, p.x_label, p.y_label, &finite(p.series)).map_err(|e| {
                Error::Plot {
                    path: path.display().to_string(),
                    why: e.to_string(),
                }
            })?;
        }
        root.present().map_err(|e| Error::Plot {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    }
    std::fs::write(path, svg).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn render(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> DrawResult {
    root.fill(&WHITE)?;
    let all = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().chain(&s.lead_in))
    };
    let steps = || all().map(|p| p.0);
    let (x_min, x_max) = match (steps().min(), steps().max()) {
        (Some(lo), Some(hi)) if lo < hi => (lo, hi),
        // One step: put it in the middle of the axis.
        (Some(x), _) => (x.saturating_sub(1), x.saturating_add(1)),
        _ => (0, 1),
    };
    let (y_min, y_max) = y_range(all().map(|p| p.1));

    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min..x_max, y_min..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(10)
        .y_labels(8)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;

    let mut drawn = false;
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let style = s.color.stroke_width(2);
        let line = s.lead_in.iter().chain(&s.points).copied();
        let color = s.color;
        chart
            .draw_series(LineSeries::new(line, style))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if s.points.len() <= MARKED_POINTS {
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, s.color.filled())),
            )?;
        }
        drawn = true;
    }
    if drawn {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    } else {
        let (w, h) = root.dim_in_pixel();
        let style = ("sans-serif", 16)
            .into_text_style(root)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let middle = (w as i32 / 2, h as i32 / 2);
        root.draw(&Text::new("no finite values to plot", middle, style))?;
    }
    Ok(())
}

/// The y range of finite values with 5% room either side; a single value (or none) gets
/// a small span around it so that the axis still has ticks.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > hi.abs().max(lo.abs()) * 1e-9 {
        span * 0.05
    } else {
        (lo.abs() * 0.05).max(1e-3)
    };
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgpu-rnn-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn loss_svg(name: &str, train: &[(u64, f32)], val: &[(u64, f32)]) -> String {
        let path = scratch(name);
        loss_plot(&path, "run", "loss (nats/char)", train, val).unwrap();
        std::fs::read_to_string(&path).unwrap()
    }

    /// The text of every `<text>` element.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|t| {
                let body = &t[t.find('>').unwrap() + 1..];
                body[..body.find("</text>").unwrap()].trim().to_string()
            })
            .collect()
    }

    /// The points of each `<polyline>` element in the given color.
    fn polylines(svg: &str, color: RGBColor) -> Vec<Vec<(f64, f64)>> {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
        svg.split("<polyline")
            .skip(1)
            .map(|p| &p[..p.find("/>").unwrap()])
            .filter(|p| p.contains(&stroke))
            .map(|p| {
                let pts = p.split("points=\"").nth(1).unwrap();
                pts[..pts.find('"').unwrap()]
                    .split_whitespace()
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn loss_plot_has_axes_ticks_legend_and_two_series() {
        let train: Vec<(u64, f32)> = (0..=100).map(|s| (s, 4.0 / (1.0 + s as f32))).collect();
        let val: Vec<(u64, f32)> = (0..=10)
            .map(|i| (i * 10, 4.2 / (1.0 + i as f32 * 10.0)))
            .collect();
        let svg = loss_svg("many.svg", &train, &val);
        let t = texts(&svg);
        for want in [
            "run",
            "step",
            "loss (nats/char)",
            "training",
            "validation",
            "0",
            "100",
        ] {
            assert!(t.iter().any(|s| s == want), "no text {want:?} in {t:?}");
        }
        // Several y ticks, including a fractional one.
        assert!(
            t.iter().filter(|s| s.parse::<f64>().is_ok()).count() >= 8,
            "{t:?}"
        );
        assert!(
            t.iter()
                .any(|s| s.contains('.') && s.parse::<f64>().is_ok()),
            "{t:?}"
        );
        // Each series a line with all its points, plus the legend's sample line.
        let blue = polylines(&svg, BLUE);
        let red = polylines(&svg, RED);
        assert!(blue.iter().any(|l| l.len() == 101), "{blue:?}");
        assert!(red.iter().any(|l| l.len() == 11), "{red:?}");
        assert!(blue.iter().any(|l| l.len() == 2) && red.iter().any(|l| l.len() == 2));
        // A falling loss ends lower in the picture (SVG y grows downwards).
        let line = blue.iter().find(|l| l.len() == 101).unwrap();
        assert!(line[0].1 < line[100].1 && line[0].0 < line[100].0);
    }

    #[test]
    fn loss_plot_of_nothing_is_an_svg_with_axes_and_a_note() {
        let svg = loss_svg("empty.svg", &[], &[]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let t = texts(&svg);
        assert!(t.iter().any(|s| s == "step") && t.iter().any(|s| s == "loss (nats/char)"));
        assert!(t.iter().any(|s| s.contains("no finite values")), "{t:?}");
        assert!(!t.iter().any(|s| s == "training"));
    }

    #[test]
    fn loss_plot_of_one_point_marks_it() {
        let svg = loss_svg("one.svg", &[(7, 2.5)], &[]);
        let t = texts(&svg);
        assert!(t.iter().any(|s| s == "training") && !t.iter().any(|s| s == "validation"));
        assert!(svg.contains("<circle"), "the lone point is drawn as a dot");
        assert!(
            t.iter().filter(|s| s.parse::<f64>().is_ok()).count() >= 3,
            "{t:?}"
        );
    }

    #[test]
    fn loss_plot_skips_nan_and_infinite_points() {
        let train = [
            (0, 3.0),
            (1, f32::NAN),
            (2, 2.0),
            (3, f32::INFINITY),
            (4, 1.0),
        ];
        let val = [(2, f32::NAN)];
        let svg = loss_svg("nan.svg", &train, &val);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let blue = polylines(&svg, BLUE);
        assert!(blue.iter().any(|l| l.len() == 3), "{blue:?}");
        // Validation had no finite point: no line and no legend entry for it.
        assert!(polylines(&svg, RED).is_empty());
        assert!(!texts(&svg).iter().any(|s| s == "validation"));
    }

    #[test]
    fn loss_plot_of_equal_values_gets_a_y_span() {
        let svg = loss_svg("flat.svg", &[(0, 1.5), (10, 1.5), (20, 1.5)], &[(10, 1.5)]);
        let line = polylines(&svg, BLUE)
            .into_iter()
            .find(|l| l.len() == 3)
            .unwrap();
        assert!(line.iter().all(|p| p.1 == line[0].1));
        assert!(
            texts(&svg)
                .iter()
                .filter(|s| s.parse::<f64>().is_ok())
                .count()
                >= 4
        );
        for (lo, hi) in [
            y_range([0.0].into_iter()),
            y_range([1e-30].into_iter()),
            y_range([-1e30, -1e30].into_iter()),
        ] {
            assert!(lo < hi && lo.is_finite() && hi.is_finite(), "{lo}..{hi}");
        }
    }

    #[test]
    fn forecast_plot_continues_the_time_axis_after_history() {
        let history: Vec<f64> = (0..40).map(|i| (i as f64 * 0.3).sin()).collect();
        let forecast: Vec<f64> = (40..50).map(|i| (i as f64 * 0.3).sin()).collect();
        let path = scratch("forecast.svg");
        forecast_plot(
            &path,
            "sine",
            "value (normalized units)",
            &history,
            &forecast,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let t = texts(&svg);
        for want in [
            "time step",
            "value (normalized units)",
            "history",
            "forecast",
            "50",
        ] {
            assert!(t.iter().any(|s| s == want), "no text {want:?} in {t:?}");
        }
        let h = polylines(&svg, BLUE)
            .into_iter()
            .find(|l| l.len() == 40)
            .unwrap();
        // The forecast joins the last history point, then its own 10 points.
        let f = polylines(&svg, ORANGE)
            .into_iter()
            .find(|l| l.len() == 11)
            .unwrap();
        assert_eq!(f[0], h[39]);
        let dx = (h[39].0 - h[0].0) / 39.0;
        assert!((f[10].0 - h[39].0 - 10.0 * dx).abs() < 2.0, "{f:?}");
        assert!(f[1].0 > h[39].0);
    }

    #[test]
    fn forecast_plot_trims_a_long_history_and_keeps_its_time_steps() {
        let history: Vec<f64> = (0..5000).map(|i| i as f64).collect();
        let path = scratch("long.svg");
        forecast_plot(&path, "long", "y", &history, &[5000.0, 5001.0]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let lens: Vec<usize> = polylines(&svg, BLUE).iter().map(Vec::len).collect();
        assert!(lens.contains(&FORECAST_HISTORY), "{lens:?}");
        let t = texts(&svg);
        assert!(
            !t.iter().any(|s| s == "0"),
            "the axis starts at step 4501, not 0: {t:?}"
        );
        assert!(
            t.iter().any(|s| s.parse::<u64>().is_ok_and(|x| x > 4500)),
            "{t:?}"
        );
    }

    #[test]
    fn forecast_plot_takes_empty_and_non_finite_inputs() {
        let path = scratch("odd.svg");
        forecast_plot(&path, "odd", "y", &[], &[]).unwrap();
        forecast_plot(
            &path,
            "odd",
            "y",
            &[f64::NAN, f64::MAX],
            &[f64::NEG_INFINITY],
        )
        .unwrap();
        let t = texts(&std::fs::read_to_string(&path).unwrap());
        assert!(t.iter().any(|s| s.contains("no finite values")), "{t:?}");
        forecast_plot(&path, "odd", "y", &[], &[1.0, 2.0]).unwrap();
        forecast_plot(&path, "odd", "y", &[1.0], &[]).unwrap();
    }

    #[test]
    fn unwritable_path_is_an_io_error_naming_it() {
        let path = scratch("missing-dir").join("x").join("loss.svg");
        match loss_plot(&path, "t", "y", &[(0, 1.0)], &[]) {
            Err(Error::Io { path: p, .. }) => assert!(p.ends_with("loss.svg")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loss_plot_path_replaces_the_extension() {
        assert_eq!(
            loss_plot_path(Path::new("out/run.safetensors")),
            Path::new("out/run.svg")
        );
    }
}
