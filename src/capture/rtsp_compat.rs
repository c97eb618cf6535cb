//! Where cameras and GStreamer's RTSP client disagree. A server that sends no `Content-Base`
//! and relative stream controls (`a=control:streamid=0`) expects them appended to the URL it
//! was asked for, as ffmpeg and VLC do (`rtsp://h/room/streamid=0`); rtspsrc resolves them as
//! RFC 3986 relative references instead (`rtsp://h/streamid=0`), and such a server refuses the
//! SETUP. `append_controls` rewrites those SETUP URLs before they are sent.

use gst::glib;
use gst::glib::translate::ToGlibPtr;
use gst::prelude::*;

/// Rewrites SETUP URLs that lost the requested URL's last path segment. Call on an `rtspsrc`
/// before it plays; `location` is its `location`.
pub fn append_controls(rtspsrc: &gst::Element, location: &str) {
    let Ok(base) = url::Url::parse(location) else {
        return;
    };
    if base.query().is_some() || base.path().ends_with('/') {
        return;
    }
    rtspsrc.connect("before-send", false, move |args| {
        let value: &glib::Value = &args[1];
        // SAFETY: before-send hands the message rtspsrc is about to send, a boxed
        // GstRTSPMessage that lives for the duration of the signal; it is read and its request
        // URI replaced with a newly allocated string, as gst_rtsp_message_init_request would.
        unsafe {
            let msg = glib::gobject_ffi::g_value_get_boxed(value.to_glib_none().0)
                as *mut gst_rtsp_sys::GstRTSPMessage;
            if !msg.is_null() && (*msg).type_ == gst_rtsp_sys::GST_RTSP_MESSAGE_REQUEST {
                let request = &mut (*msg).type_data.request;
                if request.method == gst_rtsp_sys::GST_RTSP_SETUP && !request.uri.is_null() {
                    let uri = std::ffi::CStr::from_ptr(request.uri).to_string_lossy();
                    if let Some(fixed) = appended(&base, &uri)
                        && let Ok(c) = std::ffi::CString::new(fixed)
                    {
                        glib::ffi::g_free(request.uri as glib::ffi::gpointer);
                        request.uri = glib::ffi::g_strdup(c.as_ptr());
                    }
                }
            }
        }
        Some(true.to_value())
    });
}

/// `rtsp://h/streamid=0` asked for `rtsp://h/room` → `rtsp://h/room/streamid=0`; `None` when
/// the SETUP URL already lies under the requested one or elsewhere.
fn appended(base: &url::Url, setup: &str) -> Option<String> {
    let setup = url::Url::parse(setup).ok()?;
    if setup.scheme() != base.scheme()
        || setup.host_str() != base.host_str()
        || setup.port() != base.port()
        || setup.query().is_some()
    {
        return None;
    }
    let parent = |p: &str| p.rsplit_once('/').map(|(head, _)| head.to_string());
    let (base_path, setup_path) = (base.path(), setup.path());
    if setup_path.starts_with(&format!("{base_path}/")) || setup_path == base_path {
        return None;
    }
    // The control replaced the last segment of the requested path: put it back underneath.
    if parent(setup_path)? != parent(base_path)? {
        return None;
    }
    let control = setup_path.rsplit('/').next()?;
    let mut fixed = base.clone();
    fixed.set_path(&format!("{base_path}/{control}"));
    Some(fixed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_controls_are_appended_like_ffmpeg_does() {
        let base = url::Url::parse("rtsp://127.0.0.1:8554/room").unwrap();
        assert_eq!(
            appended(&base, "rtsp://127.0.0.1:8554/streamid=0").as_deref(),
            Some("rtsp://127.0.0.1:8554/room/streamid=0")
        );
        // Already under the requested URL (Content-Base sent): untouched.
        assert_eq!(
            appended(&base, "rtsp://127.0.0.1:8554/room/trackID=1"),
            None
        );
        // Another host, or a deeper path the server chose: untouched.
        assert_eq!(appended(&base, "rtsp://10.0.0.1:8554/streamid=0"), None);
        assert_eq!(
            appended(&base, "rtsp://127.0.0.1:8554/a/b/streamid=0"),
            None
        );
        let nested = url::Url::parse("rtsp://cam/live/ch1").unwrap();
        assert_eq!(
            appended(&nested, "rtsp://cam/live/track1").as_deref(),
            Some("rtsp://cam/live/ch1/track1")
        );
    }
}
