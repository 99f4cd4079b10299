//! The model pricing table: US dollars per million input and output tokens, used to cost
//! actions that report tokens and a model but no `cost_estimate`. Prices are list prices as
//! published by the vendors; keep this table in one place and dated.

/// As of 2026-11 (list prices, USD per 1M tokens: input, output).
const PRICES: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("o3", 2.00, 8.00),
    ("o4-mini", 1.10, 4.40),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-3-5-sonnet", 3.00, 15.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-opus-4", 15.00, 75.00),
    ("gemini-2.0-flash", 0.10, 0.40),
    ("gemini-2.5-pro", 1.25, 10.00),
];

/// The price of `model` (exact name, or the longest known name it starts with, so
/// `claude-3-5-sonnet-20241022` is priced as `claude-3-5-sonnet`).
pub fn price(model: &str) -> Option<(f64, f64)> {
    let model = model.to_ascii_lowercase();
    PRICES
        .iter()
        .filter(|(name, _, _)| model == *name || model.starts_with(&format!("{name}-")))
        .max_by_key(|(name, _, _)| name.len())
        .map(|(_, input, output)| (*input, *output))
}

/// Cost in USD of `tokens_in` + `tokens_out` of `model`, if the model is priced.
pub fn cost(model: &str, tokens_in: u64, tokens_out: u64) -> Option<f64> {
    let (input, output) = price(model)?;
    Some((tokens_in as f64 * input + tokens_out as f64 * output) / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_priced_by_longest_prefix() {
        assert_eq!(price("gpt-4o-mini"), Some((0.15, 0.60)));
        assert_eq!(price("gpt-4o-2024-08-06"), Some((2.50, 10.00)));
        assert_eq!(price("claude-3-5-sonnet-20241022"), Some((3.00, 15.00)));
        assert_eq!(price("llama-local"), None);
        let c = cost("gpt-4o", 1_000_000, 100_000).unwrap();
        assert!((c - 3.5).abs() < 1e-9);
    }
}
