//! Genesys's own variable names (`GENESYSCLOUD_OAUTHCLIENT_ID`, `_SECRET`, `GENESYSCLOUD_REGION`)
//! beside the guide's (`GENESYS_CLIENT_ID`, `_SECRET`, `GENESYS_ENV_NAME`); both set and
//! different is an error naming both.

use std::collections::HashMap;

use credflow_reqwest::{Config, ErrorKind};

/// Variables set beside a base, and the two names the error must give.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

fn from(vars: &[(&str, &str)]) -> Result<Config, credflow_reqwest::Error> {
    let map: HashMap<String, String> =
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::from_lookup(move |name| map.get(name).cloned())
}

#[test]
fn genesys_tooling_names_alone_are_enough() {
    let c = from(&[
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "tf-id"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "tf-secret"),
        ("GENESYSCLOUD_REGION", "eu-west-1"),
    ])
    .unwrap();
    assert_eq!(c.credentials.id.as_str(), "tf-id");
    assert_eq!(c.credentials.secret.expose_secret(), "tf-secret");
    assert_eq!(c.target.token_url(), "https://login.mypurecloud.ie/oauth/token");
}

#[test]
fn both_names_with_the_same_value_are_one_setting() {
    let c = from(&[
        ("GENESYS_CLIENT_ID", "id"),
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "id"),
        ("GENESYS_CLIENT_SECRET", "s"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "s"),
        // The same environment, named two ways.
        ("GENESYS_ENV_NAME", "mypurecloud.de"),
        ("GENESYSCLOUD_REGION", "eu-central-1"),
    ])
    .unwrap();
    assert_eq!(c.target.api_base(), Some("https://api.mypurecloud.de"));
    // An empty variable is unset.
    let c = from(&[
        ("GENESYS_CLIENT_ID", ""),
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "id"),
        ("GENESYS_CLIENT_SECRET", "s"),
        ("GENESYSCLOUD_REGION", ""),
    ])
    .unwrap();
    assert_eq!(c.credentials.id.as_str(), "id");
    assert_eq!(c.target.api_base(), Some("https://api.mypurecloud.com"));
}

#[test]
fn both_names_with_different_values_are_refused_naming_both() {
    let base = [("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "s")];
    let cases: [Case<'_>; 3] = [
        (
            &[("GENESYSCLOUD_OAUTHCLIENT_ID", "other-id")],
            "GENESYS_CLIENT_ID",
            "GENESYSCLOUD_OAUTHCLIENT_ID",
        ),
        (
            &[("GENESYSCLOUD_OAUTHCLIENT_SECRET", "other-secret")],
            "GENESYS_CLIENT_SECRET",
            "GENESYSCLOUD_OAUTHCLIENT_SECRET",
        ),
        (
            &[("GENESYS_ENV_NAME", "mypurecloud.ie"), ("GENESYSCLOUD_REGION", "us-east-1")],
            "GENESYS_ENV_NAME",
            "GENESYSCLOUD_REGION",
        ),
    ];
    for (extra, guide, tooling) in cases {
        let vars: Vec<_> = base.iter().chain(extra).copied().collect();
        let e = from(&vars).expect_err("a conflict");
        let text = e.to_string();
        assert_eq!(e.kind(), ErrorKind::Config, "{text}");
        assert!(text.contains(&format!("{guide} and {tooling}")), "{text}");
        for value in ["other-id", "other-secret", "\"s\""] {
            assert!(!text.contains(value), "{value} shown in {text}");
        }
    }
    // A secret as a value under Genesys's name and as a file: refused, naming both.
    let e = from(&[
        ("GENESYS_CLIENT_ID", "id"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "s"),
        ("GENESYS_CLIENT_SECRET_FILE", "/nonexistent"),
    ])
    .unwrap_err();
    assert!(
        e.to_string().contains("GENESYSCLOUD_OAUTHCLIENT_SECRET and GENESYS_CLIENT_SECRET_FILE"),
        "{e}"
    );
}

#[test]
fn errors_name_the_variable_the_value_came_from() {
    let e = from(&[
        ("GENESYSCLOUD_OAUTHCLIENT_ID", "id"),
        ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "s"),
        ("GENESYSCLOUD_REGION", "mypurecloud.co"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("GENESYSCLOUD_REGION=\"mypurecloud.co\""), "{e}");
    let e = from(&[("GENESYSCLOUD_OAUTHCLIENT_ID", "id")]).unwrap_err();
    assert!(e.to_string().contains("GENESYSCLOUD_OAUTHCLIENT_SECRET"), "{e}");
}
