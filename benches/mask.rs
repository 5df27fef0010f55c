//! ns per value of each mask function on realistic inputs, as `apply` is
//! called on the proxy's hot path (one call per masked cell).
//! Run: cargo bench --bench mask -- --warm-up-time 1 --measurement-time 2

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pgveil::mask::{build, oid, ArgValue, KeyRing, Mask, MaskArgs, WireFormat};

fn spec(name: &str, args: &[(&str, ArgValue)], keys: &KeyRing) -> Mask {
    let args: MaskArgs = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    match build(name, &args, keys) {
        Ok(m) => m,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn masks(c: &mut Criterion) {
    let mut keys = KeyRing::new();
    keys.insert("pii", b"bench-key-0123456789abcdef0123456789".to_vec());
    let key = || ("key", ArgValue::Str("pii".into()));
    let int = ArgValue::Int;
    let s = |v: &str| ArgValue::Str(v.into());
    let i4 = 10000i32.to_be_bytes();
    let date = (-5185i32).to_be_bytes();
    let cases: Vec<(&str, Mask, &[u8], u32, WireFormat)> = vec![
        (
            "redact/text",
            spec("redact", &[], &keys),
            "张三丰".as_bytes(),
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "null/text",
            spec("null", &[], &keys),
            b"x",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "constant/text",
            spec("constant", &[("value", s("hidden"))], &keys),
            b"secret",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "keep/text",
            spec("keep", &[("first", int(1)), ("last", int(3))], &keys),
            b"abcdefghijkl",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "bank_card/text",
            spec("bank_card", &[], &keys),
            b"6222021234567890128",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "cn_id_card/text",
            spec("cn_id_card", &[], &keys),
            b"11010519491231002X",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "cn_mobile/text",
            spec("cn_mobile", &[], &keys),
            b"+8613812345678",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "cn_name/text",
            spec("cn_name", &[], &keys),
            "欧阳娜娜".as_bytes(),
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "email/text",
            spec("email", &[], &keys),
            b"zhangsan@example.com",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "address/text",
            spec("address", &[], &keys),
            "浙江省杭州市西湖区文三路90号".as_bytes(),
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "regex/text",
            spec(
                "regex",
                &[("pattern", s(r"\d{4}$")), ("replacement", s("****"))],
                &keys,
            ),
            b"ACCT-2024-1234",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "hash/text",
            spec("hash", &[key(), ("prefix", s("tk_"))], &keys),
            b"13812345678",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "fpe/text",
            spec(
                "fpe",
                &[key(), ("keep_first", int(6)), ("keep_last", int(4))],
                &keys,
            ),
            b"6222021234567890128",
            oid::TEXT,
            WireFormat::Text,
        ),
        (
            "date_trunc/text",
            spec("date_trunc", &[], &keys),
            b"1985-10-21 13:45:12+08",
            oid::TIMESTAMPTZ,
            WireFormat::Text,
        ),
        (
            "date_trunc/binary",
            spec("date_trunc", &[], &keys),
            &date,
            oid::DATE,
            WireFormat::Binary,
        ),
        (
            "date_shift/text",
            spec("date_shift", &[key()], &keys),
            b"1985-10-21",
            oid::DATE,
            WireFormat::Text,
        ),
        (
            "noise/text",
            spec("noise", &[key()], &keys),
            b"10000.00",
            oid::NUMERIC,
            WireFormat::Text,
        ),
        (
            "noise/binary",
            spec("noise", &[key()], &keys),
            &i4,
            oid::INT4,
            WireFormat::Binary,
        ),
        (
            "bucket/text",
            spec("bucket", &[("width", int(10))], &keys),
            b"37",
            oid::INT4,
            WireFormat::Text,
        ),
        (
            "bucket/binary",
            spec("bucket", &[("width", int(10))], &keys),
            &i4,
            oid::INT4,
            WireFormat::Binary,
        ),
    ];
    let mut group = c.benchmark_group("mask");
    for (label, mask, value, type_oid, format) in &cases {
        group.bench_function(*label, |b| {
            b.iter(|| mask.apply(black_box(Some(*value)), *type_oid, *format))
        });
    }
    group.finish();
}

criterion_group!(benches, masks);
criterion_main!(benches);
