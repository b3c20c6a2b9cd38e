//! The page's plotters backend: plotters-canvas, except that runs of filled circles and rectangles of one colour
//! become one canvas path, filled once, and runs of straight lines of one colour and width one path, stroked
//! once.
//!
//! plotters-canvas draws each circle as its own path: a CSS colour string formatted and parsed, a path begun, an
//! arc, a fill. An hour of pings is 3,600 dots, and that per-dot work made a redraw cost several times the
//! chart's 4 ms budget in Chromium. Here consecutive filled circles and rectangles (a dense column's bar) of one
//! colour are added to a single path (a `moveTo` and an `arc` each, or a `rect` for dots a few pixels wide and
//! for rectangles) and filled once, when anything else is drawn or the frame is presented. Lines likewise: an
//! hour at 10 Hz with 1 % loss is 370 crosses, 740 lines, each a stroke style parsed and a path stroked.
//! Everything else is delegated unchanged.

use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};
use plotters_canvas::CanvasBackend;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

/// A drawing failure of the canvas (a JavaScript exception, as text).
#[derive(Debug, thiserror::Error)]
#[error("canvas: {0}")]
pub struct CanvasError(String);

type Result<T = ()> = std::result::Result<T, DrawingErrorKind<CanvasError>>;

/// Filled circles up to this radius (device pixels) are drawn as squares.
const SQUARE_DOT_RADIUS: u32 = 2;

/// A colour as the batches compare it.
type Colour = ((u8, u8, u8), f64);

/// The path being gathered, and how it will be painted.
#[derive(Clone, Copy, PartialEq)]
enum Open {
    /// Filled circles (and rectangles filled at once) of one colour.
    Fill(Colour),
    /// Straight lines of one colour and width (the crosses of lost pings: two lines each).
    Stroke(Colour, u32),
}

/// plotters-canvas with batched filled circles and straight lines.
pub struct BatchedCanvas {
    inner: CanvasBackend,
    context: CanvasRenderingContext2d,
    /// The open path, if one is.
    open: Option<Open>,
}

impl BatchedCanvas {
    /// A backend drawing on `canvas`, or `None` if it has no 2D context.
    pub fn new(canvas: HtmlCanvasElement) -> Option<Self> {
        let context = canvas.get_context("2d").ok()??.dyn_into().ok()?;
        let inner = CanvasBackend::with_canvas_object(canvas)?;
        Some(Self {
            inner,
            context,
            open: None,
        })
    }

    /// Paints the open path, if any; the context is then free for plotters-canvas.
    fn flush(&mut self) {
        match self.open.take() {
            Some(Open::Fill(_)) => self.context.fill(),
            Some(Open::Stroke(..)) => self.context.stroke(),
            None => {}
        }
    }

    /// Makes the open path the one filled with `color`, starting it when needed; false when `color` is fully
    /// transparent (nothing to draw).
    fn open_path(&mut self, color: BackendColor) -> bool {
        if color.alpha == 0.0 {
            return false;
        }
        let open = Open::Fill((color.rgb, color.alpha));
        if self.open != Some(open) {
            self.flush();
            self.context.set_fill_style_str(&css(color));
            self.context.begin_path();
            self.open = Some(open);
        }
        true
    }

    /// Makes the open path the one stroked with `color` at `width`, as [`Self::open_path`] does for fills.
    fn open_stroke(&mut self, color: BackendColor, width: u32) -> bool {
        if color.alpha == 0.0 {
            return false;
        }
        let open = Open::Stroke((color.rgb, color.alpha), width);
        if self.open != Some(open) {
            self.flush();
            self.context.set_stroke_style_str(&css(color));
            self.context.set_line_width(f64::from(width));
            self.context.begin_path();
            self.open = Some(open);
        }
        true
    }

    /// Flushes, then runs one plotters-canvas call with its error converted.
    fn delegate<T>(
        &mut self,
        call: impl FnOnce(&mut CanvasBackend) -> std::result::Result<T, DrawingErrorKind<InnerError>>,
    ) -> Result<T> {
        self.flush();
        call(&mut self.inner).map_err(converted)
    }
}

/// plotters-canvas's error type, named through its backend (the crate does not export it).
type InnerError = <CanvasBackend as DrawingBackend>::ErrorType;

fn converted(e: DrawingErrorKind<InnerError>) -> DrawingErrorKind<CanvasError> {
    match e {
        DrawingErrorKind::DrawingError(e) => DrawingErrorKind::DrawingError(CanvasError(e.to_string())),
        DrawingErrorKind::FontError(e) => DrawingErrorKind::FontError(e),
    }
}

fn css(color: BackendColor) -> String {
    let (r, g, b) = color.rgb;
    format!("rgba({r},{g},{b},{})", color.alpha)
}

impl DrawingBackend for BatchedCanvas {
    type ErrorType = CanvasError;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    // plotters calls this before every element: it must not close the open path (it draws nothing).
    fn ensure_prepared(&mut self) -> Result {
        self.inner.ensure_prepared().map_err(converted)
    }

    fn present(&mut self) -> Result {
        self.delegate(|inner| inner.present())
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result {
        self.delegate(|inner| inner.draw_pixel(point, color))
    }

    fn draw_line<S: BackendStyle>(&mut self, from: BackendCoord, to: BackendCoord, style: &S) -> Result {
        if !self.open_stroke(style.color(), style.stroke_width()) {
            return Ok(());
        }
        // As plotters-canvas draws a line: a horizontal or vertical one half a pixel over, to stay sharp.
        let (mut from, mut to) = (
            (f64::from(from.0), f64::from(from.1)),
            (f64::from(to.0), f64::from(to.1)),
        );
        if from.0 == to.0 {
            from.0 -= 0.5;
            to.0 -= 0.5;
        }
        if from.1 == to.1 {
            from.1 -= 0.5;
            to.1 -= 0.5;
        }
        self.context.move_to(from.0, from.1);
        self.context.line_to(to.0, to.1);
        Ok(())
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result {
        if !fill {
            return self.delegate(|inner| inner.draw_rect(upper_left, bottom_right, style, fill));
        }
        if !self.open_path(style.color()) {
            return Ok(());
        }
        // The open path's colour is the fill style now, so the rectangle is filled at once (`fillRect` leaves
        // the path alone) rather than added to the path: measured, no slower in Chromium; the colour string
        // is still set once per run of one colour.
        let (x0, y0) = (f64::from(upper_left.0), f64::from(upper_left.1));
        let (x1, y1) = (f64::from(bottom_right.0), f64::from(bottom_right.1));
        self.context.fill_rect(x0, y0, x1 - x0, y1 - y0);
        Ok(())
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result {
        self.delegate(|inner| inner.draw_path(path, style))
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vertices: I,
        style: &S,
    ) -> Result {
        self.delegate(|inner| inner.fill_polygon(vertices, style))
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result {
        let color = style.color();
        if !fill {
            return self.delegate(|inner| inner.draw_circle(center, radius, style, fill));
        }
        if !self.open_path(color) {
            return Ok(());
        }
        let (x, y, r) = (f64::from(center.0), f64::from(center.1), f64::from(radius));
        if radius <= SQUARE_DOT_RADIUS {
            // A dot a few device pixels wide looks the same as a square, which is one call instead of two
            // and far cheaper to rasterise than an arc.
            self.context.rect(x - r, y - r, 2.0 * r, 2.0 * r);
            return Ok(());
        }
        self.context.move_to(x + r, y);
        self.context
            .arc(x, y, r, 0.0, std::f64::consts::TAU)
            .map_err(|e| DrawingErrorKind::DrawingError(CanvasError(format!("arc: {e:?}"))))
    }

    fn draw_text<S: BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> Result {
        self.delegate(|inner| inner.draw_text(text, style, pos))
    }

    fn estimate_text_size<S: BackendTextStyle>(&self, text: &str, style: &S) -> Result<(u32, u32)> {
        self.inner.estimate_text_size(text, style).map_err(converted)
    }
}
