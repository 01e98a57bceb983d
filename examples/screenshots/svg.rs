//! A ratatui buffer drawn as SVG.

use super::*;

pub(crate) const CELL_W: f64 = 8.4;
pub(crate) const CELL_H: f64 = 17.0;
pub(crate) const FONT: f64 = 14.0;
pub(crate) const BG: &str = "#1b1d23";
pub(crate) const FG: &str = "#d0d4dc";

/// A cell colour as hex, using a VS Code-like dark palette for the named colours.
pub(crate) fn hex(c: Color) -> Option<String> {
    let named = match c {
        Color::Reset => return None,
        Color::Black => "#1b1d23",
        Color::Red => "#e06c75",
        Color::Green => "#98c379",
        Color::Yellow => "#e5c07b",
        Color::Blue => "#61afef",
        Color::Magenta => "#c678dd",
        Color::Cyan => "#56b6c2",
        Color::Gray => "#abb2bf",
        Color::DarkGray => "#6b7280",
        Color::LightRed => "#ff7b86",
        Color::LightGreen => "#b5e890",
        Color::LightYellow => "#ffe08a",
        Color::LightBlue => "#82c4ff",
        Color::LightMagenta => "#e099f0",
        Color::LightCyan => "#7fd8e3",
        Color::White => "#f0f2f5",
        Color::Rgb(r, g, b) => return Some(format!("#{r:02x}{g:02x}{b:02x}")),
        Color::Indexed(i) => return Some(format!("#{i:02x}{i:02x}{i:02x}")),
    };
    Some(named.to_string())
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Each row becomes background rectangles plus runs of same-styled text; every run
/// is pinned to its cell column with `textLength`, so the grid holds whatever the
/// viewer's monospace font measures.
pub(crate) fn to_svg(buf: &Buffer) -> String {
    let (w, h) = (buf.area.width, buf.area.height);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT}">"#,
        f64::from(w) * CELL_W + 16.0,
        f64::from(h) * CELL_H + 16.0
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="{BG}"/><g transform="translate(8,8)">"#
    );
    for y in 0..h {
        let mut x = 0;
        while x < w {
            let cell = &buf[(x, y)];
            let reversed = cell.modifier.contains(Modifier::REVERSED);
            let (fg, bg) = if reversed {
                (cell.bg, cell.fg)
            } else {
                (cell.fg, cell.bg)
            };
            // Gather a run of cells sharing the style.
            let start = x;
            let mut text = String::new();
            while x < w {
                let c = &buf[(x, y)];
                if c.fg != cell.fg || c.bg != cell.bg || c.modifier != cell.modifier {
                    break;
                }
                text.push_str(c.symbol());
                x += 1;
            }
            let len = x - start;
            let px = f64::from(start) * CELL_W;
            let py = f64::from(y) * CELL_H;
            if let Some(bg) = hex(bg) {
                let _ = write!(
                    svg,
                    r#"<rect x="{px:.1}" y="{py:.1}" width="{:.1}" height="{CELL_H}" fill="{bg}"/>"#,
                    f64::from(len) * CELL_W
                );
            }
            if text.trim().is_empty() {
                continue;
            }
            let fill = hex(fg).unwrap_or_else(|| FG.to_string());
            let mut attrs = format!(r#"fill="{fill}""#);
            if cell.modifier.contains(Modifier::BOLD) {
                attrs.push_str(r#" font-weight="bold""#);
            }
            if cell.modifier.contains(Modifier::DIM) {
                attrs.push_str(r#" opacity="0.6""#);
            }
            if cell.modifier.contains(Modifier::UNDERLINED) {
                attrs.push_str(r#" text-decoration="underline""#);
            }
            let _ = write!(
                svg,
                r#"<text x="{px:.1}" y="{:.1}" textLength="{:.1}" lengthAdjust="spacingAndGlyphs" xml:space="preserve" {attrs}>{}</text>"#,
                py + CELL_H * 0.78,
                f64::from(len) * CELL_W,
                esc(&text)
            );
        }
    }
    svg.push_str("</g></svg>\n");
    svg
}
