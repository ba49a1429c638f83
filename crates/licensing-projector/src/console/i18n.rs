//! The console's two languages (D25): English and 简体中文. Every label is written once with both
//! texts side by side (`lang.tr("Frozen", "冻结")`), so none can lack a translation.

use time::{OffsetDateTime, UtcOffset};

use super::session::{LANG_COOKIE, cookie};

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Zh,
}

impl Lang {
    /// `en` or `zh-CN` (the `lang` attribute and the `?lang=` value).
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh-CN",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        if raw == "en" || raw.starts_with("en-") {
            Some(Self::En)
        } else if raw == "zh" || raw.starts_with("zh-") {
            Some(Self::Zh)
        } else {
            None
        }
    }

    /// The other language: the switch link's target.
    pub(crate) fn other(self) -> Self {
        match self {
            Self::En => Self::Zh,
            Self::Zh => Self::En,
        }
    }

    /// The switch link's label, in the language it switches to.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::En => "English",
            Self::Zh => "中文",
        }
    }

    /// The text in this language.
    pub(crate) fn tr(self, en: &'static str, zh: &'static str) -> &'static str {
        match self {
            Self::En => en,
            Self::Zh => zh,
        }
    }

    /// The request's language: `?lang=` (to be remembered in the cookie, hence the flag), else
    /// the cookie, else the first of `Accept-Language` the console speaks, else English.
    pub(crate) fn of(req: &actix_web::HttpRequest) -> (Self, bool) {
        let asked = url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "lang")
            .and_then(|(_, v)| Self::parse(&v));
        if let Some(lang) = asked {
            return (lang, true);
        }
        if let Some(lang) = cookie(req, LANG_COOKIE).and_then(Self::parse) {
            return (lang, false);
        }
        let accepted = req
            .headers()
            .get(actix_web::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut ranked: Vec<(f32, Self)> = accepted
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let lang = Self::parse(parts.next()?)?;
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1.0);
                Some((q, lang))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        (ranked.first().map_or(Self::En, |(_, l)| *l), false)
    }

    /// A license status with its marketplace name.
    pub(crate) fn status(self, status: &str) -> String {
        let zh = match status {
            "unregistered" => "未登记",
            "registered" => "已登记",
            "activation_pending" => "激活中",
            "awaiting_claim" => "待买家领取",
            "activation_failed" => "激活失败",
            "pending" => "待激活",
            "active" => "有效",
            "expired" => "已过期",
            "frozen" => "冻结",
            "released" => "释放",
            "not_requested" => "未请求",
            "activated" => "已激活",
            "failed" => "失败",
            _ => return status.to_owned(),
        };
        match self {
            Self::En => status.replace('_', " "),
            Self::Zh => format!("{zh} ({status})"),
        }
    }
}

/// A follower's name as an operator reads it.
pub(crate) fn follower(l: Lang, name: &str) -> String {
    match name {
        "license_views" => l.tr("License views", "授权码视图").to_owned(),
        "event_publisher" => l.tr("Subscriber events", "订阅事件发布").to_owned(),
        other => other.replace('_', " "),
    }
}

/// An instant in the market's zone with the zone named: `2026-11-29 21:45:03 UTC+08:00`.
pub(crate) fn market_time(t: OffsetDateTime, zone: UtcOffset) -> String {
    format!(
        "{} UTC{}",
        clock_time(t, zone),
        crate::read_model::time::zone_label(zone)
    )
}

/// An instant in the market's zone without the zone (the page's footer names it):
/// `2026-11-29 21:45:03`.
pub(crate) fn clock_time(t: OffsetDateTime, zone: UtcOffset) -> String {
    let t = t.to_offset(zone);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An RFC 3339 instant from a JSON answer, shown as [`market_time`]; `—` when absent.
pub(crate) fn market_time_of(value: &serde_json::Value, zone: UtcOffset) -> String {
    value
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        .map_or_else(|| "—".to_owned(), |t| market_time(t, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(headers: &[(&str, &str)], uri: &str) -> (Lang, bool) {
        let mut req = actix_web::test::TestRequest::with_uri(uri);
        for h in headers {
            req = req.insert_header(*h);
        }
        Lang::of(&req.to_http_request())
    }

    #[test]
    fn the_language_comes_from_the_query_then_the_cookie_then_accept_language() {
        assert_eq!(lang(&[], "/console/"), (Lang::En, false));
        assert_eq!(
            lang(
                &[("Accept-Language", "fr;q=0.9, zh-CN;q=0.8, en;q=0.5")],
                "/"
            ),
            (Lang::Zh, false)
        );
        assert_eq!(
            lang(&[("Accept-Language", "zh-CN, en;q=0.9")], "/?lang=en"),
            (Lang::En, true)
        );
        assert_eq!(
            lang(
                &[
                    ("Cookie", "a=b; licensing_console_lang=zh-CN"),
                    ("Accept-Language", "en")
                ],
                "/"
            ),
            (Lang::Zh, false)
        );
    }

    #[test]
    fn times_are_shown_in_the_market_zone_with_the_zone_named() {
        let t = OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap();
        let zone = UtcOffset::from_hms(8, 0, 0).unwrap();
        assert_eq!(market_time(t, zone), "2026-11-30 08:53:20 UTC+08:00");
    }
}
