//! The Prometheus text exposition format (version 0.0.4), written with `prometheus-client`: whoever owns metrics
//! implements [`Collector`] and describes each family through the helpers here; [`text`] encodes a set of them.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric as _, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;

use super::HistogramSnapshot;

/// The `Content-Type` of what [`text`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

pub type Result = std::result::Result<(), std::fmt::Error>;

/// Label names and values of one series.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Everything `collectors` report, in the Prometheus text format.
pub fn text(collectors: Vec<Box<dyn Collector>>) -> String {
    let mut registry = Registry::default();
    for collector in collectors {
        registry.register_collector(collector);
    }
    let mut text = String::with_capacity(16 * 1024);
    prometheus_text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// A counter without labels; `name` without the `_total` the encoding adds.
pub fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A counter family: one series per label set (such as `[("kind", "a")]`).
pub fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

pub fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A gauge family: one series per label set.
pub fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, f64)>,
) -> Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// An info metric: one series whose labels carry the information, with the value 1 (a gauge named `<name>_info`
/// in this format).
pub fn info(encoder: &mut DescriptorEncoder, name: &str, help: &str, labels: Labels<'_>) -> Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Info)?;
    metric.encode_info(&labels)
}

pub fn histogram(encoder: &mut DescriptorEncoder, name: &str, help: &str, snapshot: &HistogramSnapshot) -> Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        snapshot.sum,
        snapshot.count,
        &snapshot.buckets,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;

    #[derive(Debug)]
    struct Example(Histogram);

    impl Collector for Example {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
            counter(&mut encoder, "example_requests", "Requests.", 3)?;
            counters(
                &mut encoder,
                "example_refusals",
                "Refusals by kind.",
                [([("kind", "a\"b")], 1), ([("kind", "c")], 2)],
            )?;
            gauge(&mut encoder, "example_open", "Open now.", 2.0)?;
            info(&mut encoder, "example_build", "The build.", &[("version", "1.2.3")])?;
            histogram(&mut encoder, "example_seconds", "Latency.", &self.0.snapshot())
        }
    }

    #[test]
    fn families_are_written_in_the_prometheus_text_format() {
        let histogram = Histogram::seconds(&[1_000_000]);
        histogram.observe(500_000);
        histogram.observe(2_000_000);
        let text = text(vec![Box::new(Example(histogram))]);
        assert_eq!(
            text,
            "# HELP example_requests_total Requests.\n\
             # TYPE example_requests_total counter\n\
             example_requests_total 3\n\
             # HELP example_refusals_total Refusals by kind.\n\
             # TYPE example_refusals_total counter\n\
             example_refusals_total{kind=\"a\\\"b\"} 1\n\
             example_refusals_total{kind=\"c\"} 2\n\
             # HELP example_open Open now.\n\
             # TYPE example_open gauge\n\
             example_open 2.0\n\
             # HELP example_build_info The build.\n\
             # TYPE example_build_info gauge\n\
             example_build_info{version=\"1.2.3\"} 1\n\
             # HELP example_seconds Latency.\n\
             # TYPE example_seconds histogram\n\
             example_seconds_bucket{le=\"0.001\"} 1\n\
             example_seconds_bucket{le=\"+Inf\"} 2\n\
             example_seconds_sum 0.0025\n\
             example_seconds_count 2\n"
        );
    }
}
