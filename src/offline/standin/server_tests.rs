//! Tests of the stand-in's server: pages, errors, faults and catalogue mode.

use super::*;
use crate::offline::standin::{CATALOGUE_MAX, catalogue_session_id};

const KEY: &str = "sk_test_standin0000000000000000";

async fn get(base: &url::Url, path: &str, key: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(base.join(path).expect("a valid path"))
        .bearer_auth(key)
        .send()
        .await
        .expect("the stand-in answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

fn items(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            line_item_fixture(
                &format!("li_{i:04}"),
                &format!("prod_{i:04}"),
                &format!("Product {i}"),
                &format!("price_{i:04}"),
                1000 + i as i64,
                2,
                "usd",
            )
        })
        .collect()
}

#[tokio::test]
async fn serves_pages_like_stripe() {
    let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
        .await
        .expect("starts");
    standin.add_session("cs_test_1", items(12));
    let base = standin.url();
    let path = "/v1/checkout/sessions/cs_test_1/line_items";

    // Default limit 10, product not expanded: an id, like Stripe.
    let (status, page) = get(&base, path, KEY).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(10));
    assert_eq!(page["has_more"], true);
    assert_eq!(page["url"], path);
    assert_eq!(page["data"][0]["price"]["product"], "prod_0000");

    let query = "?expand%5B%5D=data.price.product&limit=5&starting_after=li_0009";
    let (status, page) = get(&base, &format!("{path}{query}"), KEY).await;
    assert_eq!(status, 200);
    assert_eq!(page["has_more"], false);
    assert_eq!(page["data"][0]["id"], "li_0010");
    assert_eq!(page["data"][1]["price"]["product"]["name"], "Product 11");
    assert_eq!(page["data"][1]["amount_total"], 2022);

    let (status, body) = get(&base, "/v1/checkout/sessions/cs_nope/line_items", KEY).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(
        body["error"]["message"],
        "No such checkout.session: 'cs_nope'"
    );

    let (status, body) = get(&base, path, "sk_test_other").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    standin.fail_next_with(2, 503, Some(false));
    for _ in 0..2 {
        let (status, body) = get(&base, path, KEY).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (503, Some("api_error"))
        );
    }
    assert_eq!(get(&base, path, KEY).await.0, 200);
    assert_eq!(standin.requests(), 7);
    let headers = standin.last_headers().expect("a request was seen");
    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
}

#[tokio::test]
async fn catalogue_mode_serves_the_count_the_id_names() {
    let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
        .await
        .expect("starts");
    let id = catalogue_session_id("abc", 3);
    let path = format!("/v1/checkout/sessions/{id}/line_items?expand%5B%5D=data.price.product");
    assert_eq!(
        get(&standin.url(), &path, KEY).await.0,
        404,
        "off by default"
    );
    standin.serve_catalogue();
    let (status, page) = get(&standin.url(), &path, KEY).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        page["data"][1]["price"]["product"]["name"],
        "Canvas tote bag"
    );
    assert_eq!(page["data"][1]["quantity"], 2);
    let too_many = catalogue_session_id("abc", CATALOGUE_MAX + 1);
    let path = format!("/v1/checkout/sessions/{too_many}/line_items");
    assert_eq!(get(&standin.url(), &path, KEY).await.0, 404);
}

#[tokio::test]
async fn catalogue_mode_answers_any_session_id_with_a_cart_of_its_own() {
    let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
        .await
        .expect("starts");
    standin.serve_catalogue();
    let path = "/v1/checkout/sessions/cs_test_a1fixture0000/line_items";
    let (status, first) = get(&standin.url(), path, KEY).await;
    assert_eq!(status, 200, "{first}");
    let count = first["data"].as_array().map_or(0, Vec::len);
    assert!((1..=4).contains(&count), "{first}");
    assert_eq!(
        get(&standin.url(), path, KEY).await.1,
        first,
        "the same cart"
    );
}

#[tokio::test]
async fn takes_the_key_as_basic_auth_and_names_the_kinds_it_takes() {
    let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
        .await
        .expect("starts");
    standin.add_session("cs_test_1", items(1));
    let url = standin
        .url()
        .join("/v1/checkout/sessions/cs_test_1/line_items")
        .unwrap();
    let client = reqwest::Client::new();
    // `curl -u KEY:`, as Stripe's docs show.
    let basic = client
        .get(url.clone())
        .basic_auth(KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let wrong = "rk_test_someotherkey00001234";
    let refused = client
        .get(url.clone())
        .basic_auth(wrong, None::<&str>)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("rk_test_********1234"), "{message}");
    assert!(
        message.contains("sk_test_") && message.contains("rk_test_"),
        "{message}"
    );
    assert!(!message.contains(wrong), "{message}");

    let none = client.get(url).send().await.unwrap();
    let body: Value = none.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not provide an API key"),
        "{body}"
    );
}

#[tokio::test]
async fn a_slow_stand_in_answers_after_its_delay() {
    let standin = StripeStandIn::start(([127, 0, 0, 1], 0).into(), KEY)
        .await
        .expect("starts");
    standin.add_session("cs_test_slow", items(1));
    let path = "/v1/checkout/sessions/cs_test_slow/line_items";
    standin.answer_after(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (status, page) = get(&standin.url(), path, KEY).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(standin.requests(), 1);
}
