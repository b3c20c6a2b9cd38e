//! The few browser facts the page needs, behind plain functions: the clock, the device-pixel ratio, timer
//! resolution, cross-origin isolation, the page's URL, and the CSV download.

use wasm_bindgen::{JsCast, JsValue};

/// `performance.now()` in ms (0 outside a browser).
pub fn now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.now())
}

/// The device-pixel ratio (1 outside a browser).
pub fn device_pixel_ratio() -> f64 {
    web_sys::window().map_or(1.0, |w| w.device_pixel_ratio()).max(1.0)
}

/// Whether the page is cross-origin isolated (finer timers).
pub fn cross_origin_isolated() -> bool {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &JsValue::from_str("crossOriginIsolated")).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// The smallest step `performance.now()` takes here, in ms.
pub fn timer_resolution_ms() -> f64 {
    let mut smallest = f64::INFINITY;
    let mut last = now();
    for _ in 0..20_000 {
        let t = now();
        if t > last {
            smallest = smallest.min(t - last);
            last = t;
        }
    }
    if smallest.is_finite() { smallest } else { 0.0 }
}

/// `location.search` and `location.origin`.
pub fn location() -> (String, String) {
    web_sys::window()
        .map(|w| w.location())
        .map(|l| (l.search().unwrap_or_default(), l.origin().unwrap_or_default()))
        .unwrap_or_default()
}

/// Offers `text` as a file download.
pub fn download(filename: &str, text: &str, mime: &str) -> Result<(), JsValue> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| JsValue::from_str("no document"))?;
    let anchor: web_sys::HtmlAnchorElement = document.create_element("a")?.dyn_into()?;
    anchor.set_href(&url);
    anchor.set_download(filename);
    anchor.click();
    web_sys::Url::revoke_object_url(&url)
}

/// Whether the user prefers a dark colour scheme.
pub fn prefers_dark() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
        .is_some_and(|m| m.matches())
}

/// Where the chosen theme is remembered.
const THEME_KEY: &str = "theme";

/// The theme the visitor chose last time (`Some(true)`: dark), if any.
pub fn stored_theme() -> Option<bool> {
    let stored = web_sys::window()?
        .local_storage()
        .ok()??
        .get_item(THEME_KEY)
        .ok()??;
    Some(stored == "dark")
}

/// Applies the theme: `data-theme` on `<html>` (the CSS follows it; without it, the CSS follows
/// `prefers-color-scheme`), and remembers it for the next visit (`index.html` reads it before the page loads,
/// so no wrong theme flashes).
pub fn set_theme(dark: bool) {
    let theme = if dark { "dark" } else { "light" };
    let Some(window) = web_sys::window() else {
        return;
    };
    if let Some(root) = window.document().and_then(|d| d.document_element()) {
        let _ = root.set_attribute("data-theme", theme);
    }
    if let Ok(Some(storage)) = window.local_storage() {
        let _ = storage.set_item(THEME_KEY, theme);
    }
}

/// Publishes a number on `window` for tests and benchmarks (e.g. the last chart draw time).
pub fn publish(name: &str, value: f64) {
    if let Some(window) = web_sys::window() {
        let _ = js_sys::Reflect::set(&window, &JsValue::from_str(name), &JsValue::from_f64(value));
    }
}

/// Calls `callback` when the page is being unloaded (`pagehide`: closing the tab, navigating away).
pub fn on_page_hide(callback: impl Fn() + 'static) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let closure = wasm_bindgen::closure::Closure::<dyn Fn()>::new(callback);
    let _ = window.add_event_listener_with_callback("pagehide", closure.as_ref().unchecked_ref());
    // The listener lives as long as the page.
    closure.forget();
}

/// Calls `callback(hidden)` whenever the tab is hidden or shown.
pub fn on_visibility_change(callback: impl Fn(bool) + 'static) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let target = document.clone();
    let closure = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || callback(target.hidden()));
    let _ = document.add_event_listener_with_callback("visibilitychange", closure.as_ref().unchecked_ref());
    // The listener lives as long as the page.
    closure.forget();
}
