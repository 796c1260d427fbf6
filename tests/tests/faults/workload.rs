//! Sellers who restock and buyers who check out (with every sandbox token), cancel some of
//! their orders and read them back, until told to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::client::{Ack, Answer, Api};

/// The reason buyers give when they cancel: a saga that compensates a confirmed order for any
/// other reason was not asked to.
pub const BUYER_CANCEL_REASON: &str = "changed my mind";

/// Sandbox tokens and how often buyers use them.
const TOKENS: [(&str, u32); 5] = [
    ("tok_ok", 40),
    ("tok_decline", 15),
    ("tok_timeout", 15),
    ("tok_flaky", 15),
    ("tok_slow", 15),
];

pub struct Seller {
    pub token: String,
    pub skus: Vec<String>,
}

fn pick_token(rng: &mut impl Rng) -> &'static str {
    let total: u32 = TOKENS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.gen_range(0..total);
    for (token, weight) in TOKENS {
        if roll < weight {
            return token;
        }
        roll -= weight;
    }
    "tok_ok"
}

pub fn checkout_body(token: &str) -> serde_json::Value {
    json!({"payment_token": token, "shipping_address": {
        "name": "Grace Hopper", "line1": "1 Harbour Road", "city": "Arlington",
        "postal_code": "22201", "country": "US"}})
}

/// What one buyer did.
#[derive(Default, Debug)]
pub struct BuyerReport {
    pub checkouts: u32,
    pub cancels: u32,
    pub refused: Vec<String>,
    pub gave_up: Vec<String>,
}

/// One buyer: cart, checkout, sometimes a cancel, sometimes a read, until `stop` or `max_orders`.
pub async fn buyer(
    api: Api,
    token: String,
    skus: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    max_orders: u32,
) -> BuyerReport {
    let mut report = BuyerReport::default();
    while !stop.load(Ordering::Relaxed) && report.checkouts < max_orders {
        // Fill the cart: one or two SKUs, one or two units each.
        let (lines, payment_token, cancel_after) = {
            let mut rng = rand::thread_rng();
            let count = rng.gen_range(1..=2);
            let lines: Vec<(String, u32)> = skus
                .choose_multiple(&mut rng, count)
                .map(|sku| (sku.clone(), rng.gen_range(1..=2)))
                .collect();
            let cancel_after = rng
                .gen_bool(0.2)
                .then(|| Duration::from_millis(rng.gen_range(0..2500)));
            (lines, pick_token(&mut rng), cancel_after)
        };
        let mut cart_ok = true;
        for (sku, quantity) in &lines {
            let url = format!("{}/v1/me/cart/items/{sku}", api.command_url);
            let body = json!({"quantity": quantity});
            match api
                .send(Method::PUT, url, Some(&token), Some(&body), None, None)
                .await
            {
                Answer::Ok { .. } => {}
                Answer::Refused { status, body } => {
                    report
                        .refused
                        .push(format!("PUT cart {sku}: {status} {body}"));
                    cart_ok = false;
                }
                Answer::GaveUp(why) => {
                    report.gave_up.push(why);
                    cart_ok = false;
                }
            }
        }
        if !cart_ok {
            continue;
        }
        let key = Uuid::new_v4().to_string();
        let answer = api
            .command_with_key(
                Method::POST,
                "/v1/me/cart/checkout",
                Some(&token),
                checkout_body(payment_token),
                &key,
            )
            .await;
        let (order_id, position) = match answer {
            Answer::Ok { body, position } => {
                let order_id = body["order_id"].as_str().unwrap_or_default().to_owned();
                api.record(Ack {
                    kind: "checkout",
                    subject: order_id.clone(),
                    position,
                    quantity: 0,
                    idempotency_key: key,
                });
                report.checkouts += 1;
                (order_id, position)
            }
            Answer::Refused { status, body } => {
                report.refused.push(format!("checkout: {status} {body}"));
                continue;
            }
            Answer::GaveUp(why) => {
                report.gave_up.push(why);
                continue;
            }
        };
        if let Some(after) = cancel_after {
            tokio::time::sleep(after).await;
            let key = Uuid::new_v4().to_string();
            let path = format!("/v1/orders/{order_id}/cancel");
            let body = json!({"reason": BUYER_CANCEL_REASON});
            match api
                .command_with_key(Method::POST, &path, Some(&token), body, &key)
                .await
            {
                Answer::Ok { position, .. } => {
                    api.record(Ack {
                        kind: "cancel",
                        subject: order_id.clone(),
                        position,
                        quantity: 0,
                        idempotency_key: key,
                    });
                    report.cancels += 1;
                }
                // Too late (the saga already cancelled it): a refusal, not a fault.
                Answer::Refused { .. } => {}
                Answer::GaveUp(why) => report.gave_up.push(why),
            }
        } else if rand::thread_rng().gen_bool(0.3) {
            // Read the order back (read-your-writes through the query API).
            if let Answer::GaveUp(why) = api
                .query(&format!("/v1/orders/{order_id}"), &token, position)
                .await
            {
                report.gave_up.push(why);
            }
        }
        let pause = rand::thread_rng().gen_range(50..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    report
}

/// A seller restocking one of its SKUs every so often, until `stop`.
pub async fn seller(api: Api, seller: Arc<Seller>, stop: Arc<AtomicBool>) -> (u32, Vec<String>) {
    let mut restocks = 0;
    let mut uncertain = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (sku, quantity, pause) = {
            let mut rng = rand::thread_rng();
            let sku = seller.skus.choose(&mut rng).cloned().unwrap_or_default();
            (sku, rng.gen_range(5..=15), rng.gen_range(1000..2500))
        };
        if api.restock(&seller.token, &sku, quantity).await {
            restocks += 1;
        } else {
            uncertain.push(sku);
        }
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    (restocks, uncertain)
}
