//! The soak's plot: one SVG of stacked panels (a line per series over time, the warm-up
//! shaded), written by hand so the suite needs no plotting crate.

use std::fmt::Write;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 170.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 28.0;
const GAP: f64 = 46.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// A line: its legend and its points (seconds, value).
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, the unit of its y axis and its lines.
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub series: Vec<Series>,
}

/// The whole figure as SVG text; `warmup_s` is shaded in every panel.
pub fn svg(title: &str, panels: &[Panel], warmup_s: f64) -> String {
    let height = TOP + panels.len() as f64 * (PANEL + GAP) + 10.0;
    let end_s = panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)))
        .fold(1.0, f64::max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (n, panel) in panels.iter().enumerate() {
        let top = TOP + n as f64 * (PANEL + GAP) + 16.0;
        draw_panel(&mut out, panel, top, end_s, warmup_s);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel, top: f64, end_s: f64, warmup_s: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let y_max = nice_ceiling(max);
    let x = |s: f64| LEFT + s / end_s * plot_w;
    let y = |v: f64| top + PANEL - v / y_max * PANEL;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 6.0,
        escape(&panel.title)
    );
    let warm_w = x(warmup_s.min(end_s)) - LEFT;
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{warm_w:.1}" height="{PANEL}" fill="#eeeeee"/>"##
    );
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="black"/>"#
    );
    for k in 0..=4 {
        let v = y_max * k as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y(v) + 4.0,
            label(v),
            yy = y(v)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        top + PANEL / 2.0,
        top + PANEL / 2.0,
        escape(&panel.unit)
    );
    let minutes = end_s / 60.0;
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().find(|s| minutes / s <= 8.0).unwrap_or(10.0);
    let step_s = if minutes < 2.0 { 10.0 } else { step * 60.0 };
    let mut t = 0.0;
    while t <= end_s + 1e-9 {
        let tick = if minutes < 2.0 { format!("{t:.0} s") } else { format!("{:.0} min", t / 60.0) };
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{tick}</text>"#,
            x(t),
            top + PANEL + 15.0
        );
        t += step_s;
    }
    for (k, series) in panel.series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<String> =
            series.points.iter().map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v))).collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let ly = top + 14.0 + k as f64 * 16.0;
        let lx = LEFT + plot_w + 10.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 16.0,
            lx + 20.0,
            ly + 4.0,
            escape(&series.label)
        );
    }
}

/// The next of 1, 2, 5 times a power of ten at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    let v = v.max(1.0) * 1.05;
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|&c| c >= v).unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
