//! Text in PNG figures. plotters 0.3.7 draws each glyph at its pen position truncated to
//! whole pixels and without the glyph's left side bearing, so PNG text is unevenly spaced
//! ("hol e", "AUR OC"; its SVGs are fine). [`Glyphs`] wraps a bitmap backend and draws text
//! itself with `ab_glyph`: each glyph at its subpixel pen position, bearing and kerning
//! included. Everything else (the text's layout box, anchors, rotation, the baseline
//! plotters puts at half the font size) is plotters' own, so charts are laid out as before.
use ab_glyph::{Font, FontRef, ScaleFont};
use plotters::prelude::*;
use plotters_backend::{
    text_anchor::{HPos, VPos},
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
    FontStyle as BackendFontStyle,
};

/// A raster backend whose text is drawn by [`draw_glyphs`].
pub struct Glyphs<DB>(pub DB);

/// The font plotters' registry gives the families memad registers (`plot::register_fonts`:
/// DejaVu Sans for every family name, bold for bold text).
fn font_of(style: BackendFontStyle) -> FontRef<'static> {
    let bytes = match style {
        BackendFontStyle::Bold => dejavu::sans::bold(),
        _ => dejavu::sans::regular(),
    };
    FontRef::try_from_slice(bytes).expect("dejavu ships valid TrueType fonts")
}

/// Calls `pixel(x, y, coverage)` for every inked pixel of `text` at `size` px, in the
/// coordinates plotters' own font code uses (x from the pen's start, y from half the size
/// above the baseline).
fn draw_glyphs(font: &FontRef<'_>, size: f32, text: &str, mut pixel: impl FnMut(i32, i32, f32)) {
    let scaled = font.as_scaled(size);
    let mut pen = 0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = previous {
            pen += scaled.kern(p, id);
        }
        previous = Some(id);
        let glyph = id.with_scale_and_position(size, ab_glyph::point(pen, 0.0));
        if let Some(outline) = font.outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            let (left, top) = (bounds.min.x as i32, (size / 2.0 + bounds.min.y) as i32);
            outline.draw(|x, y, coverage| pixel(left + x as i32, top + y as i32, coverage));
        }
        pen += scaled.h_advance(id);
    }
}

impl<DB: DrawingBackend> DrawingBackend for Glyphs<DB> {
    type ErrorType = DB::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        (iw, ih): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, (iw, ih), src)
    }

    /// plotters-backend's default `draw_text`, with the glyphs placed by [`draw_glyphs`].
    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.get_size();
        let mut result = Ok(());
        draw_glyphs(
            &font_of(style.style()),
            style.size() as f32,
            text,
            |x, y, coverage| {
                let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if result.is_ok() && x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                    let alpha = color.alpha * f64::from(coverage.clamp(0.0, 1.0));
                    result = self.0.draw_pixel((x, y), BackendColor { alpha, ..color });
                }
            },
        );
        result
    }
}

impl<'a> crate::plot::Raster for Glyphs<BitMapBackend<'a>> {
    const PIXELS: bool = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns of `text` drawn at 40 px that hold ink.
    fn inked_columns(text: &str) -> Vec<i32> {
        let font = font_of(BackendFontStyle::Normal);
        let mut columns = std::collections::BTreeSet::new();
        draw_glyphs(&font, 40.0, text, |x, _, c| {
            if c > 0.5 {
                columns.insert(x);
            }
        });
        columns.into_iter().collect()
    }

    #[test]
    fn glyphs_keep_their_side_bearings() {
        // DejaVu Sans 'm' at 40 px: left bearing about 3.6 px, advance about 39 px; plotters
        // drew its first ink at column 0 and a second 'm' at column 39.
        let font = font_of(BackendFontStyle::Normal).into_scaled(40.0);
        let m = font.glyph_id('m');
        let (bearing, advance) = (font.h_side_bearing(m), font.h_advance(m));
        assert!(bearing > 2.0, "{bearing}");
        let one = inked_columns("m");
        assert_eq!(one[0], bearing.round() as i32, "{one:?}");
        // The second 'm' starts one advance later, to the pixel.
        let two = inked_columns("mm");
        let second = two.iter().find(|&&x| x as f32 > advance - 1.0).unwrap();
        assert!(
            (*second as f32 - (advance + bearing)).abs() <= 1.0,
            "{second} against {}",
            advance + bearing
        );
    }
}
