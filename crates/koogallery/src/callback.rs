//! The callbacks KooGallery sends to the seller's production URL (商家接入接口), and the answer.
//!
//! [`CallbackRequest::parse`] turns the (already verified) body into a typed request, checking
//! every field against the spec (§2.3–2.5): presence, type, maximum length and allowed values.
//! Unknown fields are tolerated; unknown scenes are kept (D13); unknown activities are refused.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::market_time::{InvalidTime, parse_market_time};

/// A JSON value whose objects (at the top level) never repeat a key: with a repeated key, which
/// value counts would be a guess (serde_json keeps the last one), so the body is refused instead.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = access.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueKeys(Value::Object(map)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = access.next_element::<Value>()? {
                    items.push(item);
                }
                Ok(UniqueKeys(Value::Array(items)))
            }
            fn visit_str<E>(self, v: &str) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(Value::String(v.to_owned())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(Value::from(v)))
            }
            fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys(Value::Null))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `testFlag`: whether a callback is a debug call or probe (`"1"`) or real traffic (`"0"`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TestFlag {
    /// `"0"`: a real callback.
    #[default]
    #[serde(rename = "0")]
    Real,
    /// `"1"`: a debug call from the seller console, or the twice-daily probe.
    #[serde(rename = "1")]
    Test,
}

impl TestFlag {
    /// Whether this is test traffic.
    pub fn is_test(self) -> bool {
        self == Self::Test
    }
}

/// `scene` of `refreshLicenseCode`. Unknown values are kept verbatim (D13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Scene {
    /// `RENEWAL` (续费).
    Renewal,
    /// `UNSUBSCRIBE_RENEWAL_PERIOD` (退续费).
    UnsubscribeRenewalPeriod,
    /// Any other value.
    Other(String),
}

impl Scene {
    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Renewal => "RENEWAL",
            Self::UnsubscribeRenewalPeriod => "UNSUBSCRIBE_RENEWAL_PERIOD",
            Self::Other(raw) => raw,
        }
    }
}

impl From<String> for Scene {
    fn from(raw: String) -> Self {
        match raw.as_str() {
            "RENEWAL" => Self::Renewal,
            "UNSUBSCRIBE_RENEWAL_PERIOD" => Self::UnsubscribeRenewalPeriod,
            _ => Self::Other(raw),
        }
    }
}

impl From<Scene> for String {
    fn from(scene: Scene) -> Self {
        scene.as_str().to_owned()
    }
}

/// `status` of `updateLicenseCodeStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LicenseStatusChange {
    /// `FREEZE`.
    #[serde(rename = "FREEZE")]
    Freeze,
    /// `UNFREEZE`.
    #[serde(rename = "UNFREEZE")]
    Unfreeze,
}

/// `refreshLicenseCode` (更新授权码有效期).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshLicenseCode {
    /// New absolute expiry, `yyyyMMddHHmmss` (validated as a real date).
    pub expire_time: String,
    /// License code.
    pub license: String,
    /// The renewal (or cancellation) order.
    pub order_id: String,
    /// Its order line.
    pub order_line_id: String,
    /// New product id when the period type changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// Why.
    pub scene: Scene,
    /// Debug or real.
    pub test_flag: TestFlag,
}

/// `updateLicenseCodeStatus` (变更授权码状态).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateLicenseCodeStatus {
    /// License code.
    pub license: String,
    /// Freeze or unfreeze.
    pub status: LicenseStatusChange,
    /// Debug or real.
    pub test_flag: TestFlag,
}

/// `releaseLicenseCode` (释放授权码).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseLicenseCode {
    /// License code.
    pub license: String,
    /// The unsubscribe order, for a release after unsubscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Its order line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_line_id: Option<String>,
    /// Debug or real.
    pub test_flag: TestFlag,
}

/// A callback, by its `activity`. Serialises to the marketplace's compact, key-sorted form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "activity")]
pub enum CallbackRequest {
    /// `refreshLicenseCode`.
    #[serde(rename = "refreshLicenseCode")]
    Refresh(RefreshLicenseCode),
    /// `updateLicenseCodeStatus`.
    #[serde(rename = "updateLicenseCodeStatus")]
    UpdateStatus(UpdateLicenseCodeStatus),
    /// `releaseLicenseCode`.
    #[serde(rename = "releaseLicenseCode")]
    Release(ReleaseLicenseCode),
}

/// Why a callback body is not a valid callback. Each is answered `000002` (D1), naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCallback {
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("body is not a JSON object")]
    NotAnObject,
    /// A mandatory field is absent, null or empty.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field is not a string.
    #[error("field `{0}` must be a string")]
    NotAString(&'static str),
    /// A field is longer than the spec allows.
    #[error("field `{field}` is longer than {max} characters")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its maximum length.
        max: usize,
    },
    /// A field has a value outside those allowed.
    #[error("field `{field}` has an invalid value: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `activity` names no License 2.0 callback (D13).
    #[error("unknown activity `{0}`")]
    UnknownActivity(String),
}

impl InvalidCallback {
    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Missing(f) | Self::NotAString(f) => Some(f),
            Self::TooLong { field, .. } | Self::Invalid { field, .. } => Some(field),
            Self::UnknownActivity(_) => Some("activity"),
            Self::NotJson(_) | Self::NotAnObject => None,
        }
    }
}

/// Reads the fields of a callback object with their spec limits.
struct Fields(Map<String, Value>);

impl Fields {
    fn optional(&self, field: &'static str, max: usize) -> Result<Option<String>, InvalidCallback> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s.chars().count() > max => {
                Err(InvalidCallback::TooLong { field, max })
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(InvalidCallback::NotAString(field)),
        }
    }

    fn required(&self, field: &'static str, max: usize) -> Result<String, InvalidCallback> {
        self.optional(field, max)?
            .ok_or(InvalidCallback::Missing(field))
    }

    fn test_flag(&self) -> Result<TestFlag, InvalidCallback> {
        match self.optional("testFlag", 2)?.as_deref() {
            None | Some("0") => Ok(TestFlag::Real),
            Some("1") => Ok(TestFlag::Test),
            Some(other) => Err(InvalidCallback::Invalid {
                field: "testFlag",
                reason: format!("expected \"0\" or \"1\", got {other:?}"),
            }),
        }
    }
}

impl CallbackRequest {
    /// Parses and validates a callback body. Call it only after the signature was verified over
    /// these same bytes (D2).
    pub fn parse(body: &[u8]) -> Result<Self, InvalidCallback> {
        let value: UniqueKeys =
            serde_json::from_slice(body).map_err(|e| InvalidCallback::NotJson(e.to_string()))?;
        let UniqueKeys(Value::Object(map)) = value else {
            return Err(InvalidCallback::NotAnObject);
        };
        let fields = Fields(map);
        let activity = fields.required("activity", 32)?;
        match activity.as_str() {
            "refreshLicenseCode" => {
                let expire_time = fields.required("expireTime", 20)?;
                parse_market_time(&expire_time, time::UtcOffset::UTC).map_err(|e| {
                    InvalidCallback::Invalid {
                        field: "expireTime",
                        reason: match e {
                            InvalidTime::Format => "expected yyyyMMddHHmmss".to_owned(),
                            InvalidTime::OutOfRange => "not a real date and time".to_owned(),
                        },
                    }
                })?;
                Ok(Self::Refresh(RefreshLicenseCode {
                    scene: Scene::from(fields.required("scene", 64)?),
                    order_id: fields.required("orderId", 64)?,
                    order_line_id: fields.required("orderLineId", 64)?,
                    license: fields.required("license", 64)?,
                    product_id: fields.optional("productId", 64)?,
                    expire_time,
                    test_flag: fields.test_flag()?,
                }))
            }
            "updateLicenseCodeStatus" => {
                let status = match fields.required("status", 32)?.as_str() {
                    "FREEZE" => LicenseStatusChange::Freeze,
                    "UNFREEZE" => LicenseStatusChange::Unfreeze,
                    other => {
                        return Err(InvalidCallback::Invalid {
                            field: "status",
                            reason: format!("expected FREEZE or UNFREEZE, got {other:?}"),
                        });
                    }
                };
                Ok(Self::UpdateStatus(UpdateLicenseCodeStatus {
                    license: fields.required("license", 64)?,
                    status,
                    test_flag: fields.test_flag()?,
                }))
            }
            "releaseLicenseCode" => Ok(Self::Release(ReleaseLicenseCode {
                license: fields.required("license", 64)?,
                order_id: fields.optional("orderId", 64)?,
                order_line_id: fields.optional("orderLineId", 64)?,
                test_flag: fields.test_flag()?,
            })),
            _ => Err(InvalidCallback::UnknownActivity(activity)),
        }
    }

    /// The `activity` value.
    pub fn activity(&self) -> &'static str {
        match self {
            Self::Refresh(_) => "refreshLicenseCode",
            Self::UpdateStatus(_) => "updateLicenseCodeStatus",
            Self::Release(_) => "releaseLicenseCode",
        }
    }

    /// The license code the callback is about.
    pub fn license(&self) -> &str {
        match self {
            Self::Refresh(r) => &r.license,
            Self::UpdateStatus(u) => &u.license,
            Self::Release(r) => &r.license,
        }
    }

    /// Debug/probe or real traffic.
    pub fn test_flag(&self) -> TestFlag {
        match self {
            Self::Refresh(r) => r.test_flag,
            Self::UpdateStatus(u) => u.test_flag,
            Self::Release(r) => r.test_flag,
        }
    }

    /// The marketplace's compact JSON, keys in the order it sends them.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("plain strings serialise: {e}"))
    }
}

/// The `resultCode` of an answer to a callback (调用结果码, License 2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResultCode {
    /// `000000` success.
    #[serde(rename = "000000")]
    Success,
    /// `000001` authentication failed (鉴权失败).
    #[serde(rename = "000001")]
    AuthenticationFailed,
    /// `000002` invalid request parameters.
    #[serde(rename = "000002")]
    InvalidParameters,
    /// `000003` license code does not exist (授权码ID不存在).
    #[serde(rename = "000003")]
    LicenseNotFound,
    /// `000004` request being processed (请求处理中).
    #[serde(rename = "000004")]
    Processing,
    /// `000005` other internal error.
    #[serde(rename = "000005")]
    InternalError,
}

impl ResultCode {
    /// All six codes.
    pub const ALL: [Self; 6] = [
        Self::Success,
        Self::AuthenticationFailed,
        Self::InvalidParameters,
        Self::LicenseNotFound,
        Self::Processing,
        Self::InternalError,
    ];

    /// The six-digit wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "000000",
            Self::AuthenticationFailed => "000001",
            Self::InvalidParameters => "000002",
            Self::LicenseNotFound => "000003",
            Self::Processing => "000004",
            Self::InternalError => "000005",
        }
    }

    /// Reads a wire value.
    pub fn from_wire(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The default `resultMsg`.
    pub fn default_message(self) -> &'static str {
        match self {
            Self::Success => "success.",
            Self::AuthenticationFailed => "authentication failed.",
            Self::InvalidParameters => "invalid request parameters.",
            Self::LicenseNotFound => "license code does not exist.",
            Self::Processing => "request is being processed.",
            Self::InternalError => "internal error.",
        }
    }
}

/// The answer to a callback: `{"resultCode":"…","resultMsg":"…"}`, always with HTTP 200 (D1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackResponse {
    /// The result code.
    pub result_code: ResultCode,
    /// A description, at most 255 characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result_msg: String,
}

/// Longest `resultMsg` the marketplace accepts.
pub const RESULT_MSG_MAX_LEN: usize = 255;

impl CallbackResponse {
    /// The answer with the code's default message.
    pub fn new(code: ResultCode) -> Self {
        Self::with_message(code, code.default_message())
    }

    /// The answer with a specific message, cut to 255 characters.
    pub fn with_message(code: ResultCode, message: impl Into<String>) -> Self {
        let mut result_msg: String = message.into();
        if result_msg.chars().count() > RESULT_MSG_MAX_LEN {
            result_msg = result_msg.chars().take(RESULT_MSG_MAX_LEN).collect();
        }
        Self {
            result_code: code,
            result_msg,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("plain strings serialise: {e}"))
    }
}

/// `Content-Type` of a callback answer (D1).
pub const RESPONSE_CONTENT_TYPE: &str = "application/json;charset=UTF-8";
