//! Wire formats: callback parsing field by field, golden JSON of every wire type, tolerant reading
//! of open-API answers.

use insta::assert_snapshot;
use koogallery::callback::{
    CallbackRequest, CallbackResponse, InvalidCallback, LicenseStatusChange, ResultCode, Scene,
    TestFlag,
};
use koogallery::openapi::{
    ActivateData, ActivateRequest, ApiResponse, EmbeddedLicenseCodeInfo, HeartbeatData,
    HeartbeatInfo, HeartbeatRequest,
};

const REFRESH: &str = r#"{"activity":"refreshLicenseCode","expireTime":"20230523201932","license":"PL0000000001","orderId":"CS2305231000ABCDE","orderLineId":"CS2305231000ABCDE-000001","productId":"OFFI000000000000000001","scene":"RENEWAL","testFlag":"1"}"#;
const FREEZE: &str = r#"{"activity":"updateLicenseCodeStatus","license":"PL0000000001","status":"FREEZE","testFlag":"1"}"#;
const RELEASE: &str = r#"{"activity":"releaseLicenseCode","license":"PL0000000001","orderId":"CS2305231000ABCDE","orderLineId":"CS2305231000ABCDE-000001","testFlag":"1"}"#;

fn parse(body: &str) -> Result<CallbackRequest, InvalidCallback> {
    CallbackRequest::parse(body.as_bytes())
}

/// The refresh example with one field replaced (or removed, with `None`).
fn refresh_with(field: &str, value: Option<serde_json::Value>) -> String {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(REFRESH).unwrap();
    match value {
        Some(v) => map.insert(field.to_owned(), v),
        None => map.remove(field),
    };
    serde_json::to_string(&map).unwrap()
}

#[test]
fn the_spec_examples_round_trip_byte_for_byte() {
    for body in [REFRESH, FREEZE, RELEASE] {
        assert_eq!(parse(body).unwrap().to_json(), body);
    }
}

#[test]
fn every_field_of_a_refresh_is_read() {
    let CallbackRequest::Refresh(r) = parse(REFRESH).unwrap() else {
        panic!("not a refresh")
    };
    assert_eq!(r.expire_time, "20230523201932");
    assert_eq!(r.license, "PL0000000001");
    assert_eq!(r.order_id, "CS2305231000ABCDE");
    assert_eq!(r.order_line_id, "CS2305231000ABCDE-000001");
    assert_eq!(r.product_id.as_deref(), Some("OFFI000000000000000001"));
    assert_eq!(r.scene, Scene::Renewal);
    assert_eq!(r.test_flag, TestFlag::Test);
    let cancel = refresh_with("scene", Some("UNSUBSCRIBE_RENEWAL_PERIOD".into()));
    assert!(
        matches!(parse(&cancel).unwrap(), CallbackRequest::Refresh(r) if r.scene == Scene::UnsubscribeRenewalPeriod)
    );
}

#[test]
fn unknown_scenes_and_fields_are_tolerated() {
    let body = refresh_with("scene", Some("TRIAL_TO_FORMAL".into()));
    let CallbackRequest::Refresh(r) = parse(&body).unwrap() else {
        panic!("not a refresh")
    };
    assert_eq!(r.scene, Scene::Other("TRIAL_TO_FORMAL".into()));
    assert_eq!(r.scene.as_str(), "TRIAL_TO_FORMAL");
    let body = refresh_with("newMarketplaceField", Some(serde_json::json!({"x": 1})));
    assert!(parse(&body).is_ok());
}

#[test]
fn test_flag_defaults_to_real_and_accepts_only_0_or_1() {
    let real = parse(&refresh_with("testFlag", None)).unwrap();
    assert_eq!(real.test_flag(), TestFlag::Real);
    assert!(!real.test_flag().is_test());
    assert_eq!(
        parse(&refresh_with("testFlag", Some("0".into())))
            .unwrap()
            .test_flag(),
        TestFlag::Real
    );
    assert!(matches!(
        parse(&refresh_with("testFlag", Some("2".into()))),
        Err(InvalidCallback::Invalid {
            field: "testFlag",
            ..
        })
    ));
    assert_eq!(
        parse(&refresh_with("testFlag", Some("100".into()))),
        Err(InvalidCallback::TooLong {
            field: "testFlag",
            max: 2
        })
    );
}

#[test]
fn each_mandatory_refresh_field_is_required() {
    for field in ["expireTime", "license", "orderId", "orderLineId", "scene"] {
        assert_eq!(
            parse(&refresh_with(field, None)),
            Err(InvalidCallback::Missing(field)),
            "{field} absent"
        );
        assert_eq!(
            parse(&refresh_with(field, Some("".into()))),
            Err(InvalidCallback::Missing(field)),
            "{field} empty"
        );
        assert_eq!(
            parse(&refresh_with(field, Some(serde_json::Value::Null))),
            Err(InvalidCallback::Missing(field)),
            "{field} null"
        );
        assert_eq!(
            parse(&refresh_with(field, Some(7.into()))),
            Err(InvalidCallback::NotAString(field)),
            "{field} number"
        );
    }
    assert!(
        parse(&refresh_with("productId", None)).is_ok(),
        "productId is optional"
    );
}

#[test]
fn lengths_are_limited_as_the_spec_says() {
    for (field, max) in [
        ("license", 64),
        ("orderId", 64),
        ("orderLineId", 64),
        ("productId", 64),
        ("scene", 64),
    ] {
        assert!(
            parse(&refresh_with(field, Some("A".repeat(max).into()))).is_ok(),
            "{field} at {max}"
        );
        assert_eq!(
            parse(&refresh_with(field, Some("A".repeat(max + 1).into()))),
            Err(InvalidCallback::TooLong { field, max }),
            "{field} past {max}"
        );
    }
    // Characters, not bytes: 64 Chinese characters fit.
    assert!(parse(&refresh_with("orderId", Some("单".repeat(64).into()))).is_ok());
}

#[test]
fn expire_time_must_be_a_real_time() {
    for bad in [
        "2023-05-23",
        "20231323201932",
        "202305232019",
        "2023052320193200",
    ] {
        let err = parse(&refresh_with("expireTime", Some(bad.into()))).unwrap_err();
        assert_eq!(err.field(), Some("expireTime"), "{bad}: {err}");
    }
    assert_eq!(
        parse(&refresh_with("expireTime", Some("1".repeat(21).into()))),
        Err(InvalidCallback::TooLong {
            field: "expireTime",
            max: 20
        })
    );
}

#[test]
fn status_changes_and_releases() {
    let CallbackRequest::UpdateStatus(u) = parse(FREEZE).unwrap() else {
        panic!("not a status change")
    };
    assert_eq!(u.status, LicenseStatusChange::Freeze);
    let unfreeze = FREEZE.replace("FREEZE", "UNFREEZE");
    assert!(
        matches!(parse(&unfreeze).unwrap(), CallbackRequest::UpdateStatus(u) if u.status == LicenseStatusChange::Unfreeze)
    );
    assert!(matches!(
        parse(&FREEZE.replace("FREEZE", "PAUSE")),
        Err(InvalidCallback::Invalid {
            field: "status",
            ..
        })
    ));
    assert_eq!(
        parse(r#"{"activity":"updateLicenseCodeStatus","license":"PL1"}"#),
        Err(InvalidCallback::Missing("status"))
    );

    let bare = parse(r#"{"activity":"releaseLicenseCode","license":"PL1"}"#).unwrap();
    assert_eq!(
        bare.to_json(),
        r#"{"activity":"releaseLicenseCode","license":"PL1","testFlag":"0"}"#
    );
    assert_eq!(bare.license(), "PL1");
    assert_eq!(bare.activity(), "releaseLicenseCode");
    assert_eq!(
        parse(r#"{"activity":"releaseLicenseCode"}"#),
        Err(InvalidCallback::Missing("license"))
    );
}

#[test]
fn bodies_that_are_not_callbacks() {
    assert!(matches!(
        parse("{not json"),
        Err(InvalidCallback::NotJson(_))
    ));
    assert!(matches!(parse(""), Err(InvalidCallback::NotJson(_))));
    assert_eq!(parse("[1,2]"), Err(InvalidCallback::NotAnObject));
    assert_eq!(parse("{}"), Err(InvalidCallback::Missing("activity")));
    assert_eq!(
        parse(r#"{"activity":"newInstance"}"#),
        Err(InvalidCallback::UnknownActivity("newInstance".into()))
    );
    assert_eq!(
        parse(r#"{"activity":"newInstance"}"#).unwrap_err().field(),
        Some("activity")
    );
    assert_eq!(
        parse(r#"{"activity":["x"]}"#),
        Err(InvalidCallback::NotAString("activity"))
    );
}

#[test]
fn errors_name_the_field_in_their_message() {
    assert_snapshot!(parse(&refresh_with("orderId", None)).unwrap_err().to_string(), @"missing field `orderId`");
    assert_snapshot!(parse(&refresh_with("license", Some("A".repeat(65).into()))).unwrap_err().to_string(), @"field `license` is longer than 64 characters");
}

#[test]
fn golden_callbacks() {
    let all: Vec<_> = [REFRESH, FREEZE, RELEASE]
        .iter()
        .map(|b| parse(b).unwrap())
        .collect();
    assert_snapshot!("callbacks", serde_json::to_string_pretty(&all).unwrap());
}

#[test]
fn golden_responses() {
    let all: Vec<String> = ResultCode::ALL
        .iter()
        .map(|c| CallbackResponse::new(*c).to_json())
        .collect();
    assert_snapshot!("responses", all.join("\n"));
    let long = CallbackResponse::with_message(ResultCode::InvalidParameters, "x".repeat(300));
    assert_eq!(long.result_msg.len(), 255);
    for code in ResultCode::ALL {
        assert_eq!(ResultCode::from_wire(code.as_str()), Some(code));
    }
    assert_eq!(ResultCode::from_wire("000006"), None);
}

#[test]
fn golden_open_api_requests() {
    let activate = ActivateRequest {
        license: "PLXXXXXX".into(),
        real_effect_time: None,
    };
    let with_time = ActivateRequest {
        license: "PLXXXXXX".into(),
        real_effect_time: Some("20260102153555".into()),
    };
    let heartbeat = HeartbeatRequest {
        license: "PLXXXXXX".into(),
        heartbeat_info: HeartbeatInfo {
            third_party_account: "myaccount1".into(),
            ip: Some("192.168.1.51".into()),
        },
    };
    let text = [
        serde_json::to_string(&activate).unwrap(),
        serde_json::to_string(&with_time).unwrap(),
        serde_json::to_string(&heartbeat).unwrap(),
    ];
    assert_snapshot!("open_api_requests", text.join("\n"));
    assert_eq!(
        text[0], r#"{"license":"PLXXXXXX"}"#,
        "the body of vector V5"
    );
}

#[test]
fn activate_answers_decode_license_code_info_and_keep_the_raw_string() {
    let body = r#"{"error_code":"92020000","error_msg":"success","data":{"license_code_info":"{\"status\":\"ALIVE\",\"expire_time\":\"20230726121646\",\"product_id\":\"12345\",\"amount\":2,\"order_id\":\"CS123\",\"new_key\":true}","extra_data":1},"trace":"t"}"#;
    let reply: ApiResponse<ActivateData> = serde_json::from_str(body).unwrap();
    assert_eq!(reply.error_code, "92020000");
    assert_eq!(reply.extra.get("trace"), Some(&serde_json::json!("t")));
    let data = reply.data.as_ref().unwrap();
    assert_eq!(data.extra.get("extra_data"), Some(&serde_json::json!(1)));
    let info = &data.license_code_info;
    assert_eq!(
        info.raw,
        r#"{"status":"ALIVE","expire_time":"20230726121646","product_id":"12345","amount":2,"order_id":"CS123","new_key":true}"#
    );
    let parsed = info.parsed.as_ref().unwrap();
    assert_eq!(parsed.status.as_deref(), Some("ALIVE"));
    assert_eq!(parsed.expire_time.as_deref(), Some("20230726121646"));
    assert_eq!(parsed.product_id.as_deref(), Some("12345"));
    assert_eq!(parsed.order_id.as_deref(), Some("CS123"));
    assert_eq!(parsed.amount.as_ref().and_then(|a| a.as_u64()), Some(2));
    assert_eq!(parsed.extra.get("new_key"), Some(&serde_json::json!(true)));
    assert_snapshot!(
        "activate_reply",
        serde_json::to_string_pretty(&reply).unwrap()
    );

    let garbled = EmbeddedLicenseCodeInfo::from_raw("not json");
    assert_eq!((garbled.raw.as_str(), garbled.parsed), ("not json", None));
}

#[test]
fn heartbeat_answers_and_gateway_errors_are_read_tolerantly() {
    let body = r#"{"error_code":"92020000","error_msg":"success","data":{"license_code":"PL1","status":"EXPIRED","activate_time":"20230101000000","product_id":"p","expire_time":"20240101000000","usage":{"n":1}}}"#;
    let reply: ApiResponse<HeartbeatData> = serde_json::from_str(body).unwrap();
    let data = reply.data.as_ref().unwrap();
    assert_eq!(data.status.as_deref(), Some("EXPIRED"));
    assert_eq!(data.extra.get("usage"), Some(&serde_json::json!({"n": 1})));
    assert_snapshot!(
        "heartbeat_reply",
        serde_json::to_string_pretty(&reply).unwrap()
    );

    let gateway = r#"{"error_msg":"Incorrect IAM authentication information","error_code":"APIGW.0301","request_id":"abc"}"#;
    let reply: ApiResponse<HeartbeatData> = serde_json::from_str(gateway).unwrap();
    assert_eq!(
        (
            reply.error_code.as_str(),
            reply.request_id.as_deref(),
            reply.data
        ),
        ("APIGW.0301", Some("abc"), None)
    );
}

#[test]
fn a_callback_body_with_a_repeated_key_is_refused() {
    let body = br#"{"activity":"updateLicenseCodeStatus","license":"PL1","status":"FREEZE","status":"UNFREEZE","testFlag":"0"}"#;
    let error = koogallery::callback::CallbackRequest::parse(body).unwrap_err();
    assert!(
        matches!(error, koogallery::callback::InvalidCallback::NotJson(_))
            && error.to_string().contains("duplicate key `status`"),
        "{error}"
    );
}
