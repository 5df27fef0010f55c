//! ns per value of each mask function on realistic inputs, through `apply`
//! (the reference) and `apply_into` (the hot path, one call per masked
//! cell), and per DataRow of bench/bulk.sh's table through both paths.
//! Run: cargo bench --bench mask -- --warm-up-time 1 --measurement-time 2

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use pgveil::mask::{build, oid, ArgValue, KeyRing, Mask, MaskArgs, WireFormat};
use pgveil::session::datarow::{self, ColumnMask};
use pgveil::session::wire;

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
    // The hot path: the same values written into a reused output buffer.
    let mut group = c.benchmark_group("mask_into");
    let mut out = BytesMut::with_capacity(1 << 16);
    for (label, mask, value, type_oid, format) in &cases {
        group.bench_function(*label, |b| {
            b.iter(|| {
                out.clear();
                mask.apply_into(black_box(value), *type_oid, *format, &mut out)
            })
        });
    }
    group.finish();
}

/// One row of bench/bulk.sh's table `big`, six of eight columns masked, as
/// the reference path (decode, `apply` per cell, encode) and as the one-pass
/// rewrite the proxy uses.
fn rows(c: &mut Criterion) {
    let keys = KeyRing::new();
    let int = ArgValue::Int;
    let s = |v: &str| ArgValue::Str(v.into());
    let masks = [
        (1, spec("cn_name", &[], &keys), oid::TEXT),
        (2, spec("cn_id_card", &[], &keys), oid::TEXT),
        (3, spec("cn_mobile", &[], &keys), oid::TEXT),
        (4, spec("email", &[], &keys), oid::TEXT),
        (
            5,
            spec("bucket", &[("width", int(10_000))], &keys),
            oid::NUMERIC,
        ),
        (
            6,
            spec("date_trunc", &[("unit", s("year"))], &keys),
            oid::DATE,
        ),
    ];
    // numeric 12345.67: 3 base-10000 digits (1, 2345, 6700), weight 1, scale 2.
    let income = [0u8, 3, 0, 1, 0, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1A, 0x2C];
    let birth = (-5185i32).to_be_bytes();
    let id = 123_456i64.to_be_bytes();
    let text_row: [&[u8]; 8] = [
        b"123456",
        "王小明".as_bytes(),
        b"11010519491231002X",
        b"13812345678",
        b"user123456@example.com",
        b"12345.67",
        b"1985-10-21",
        b"branch-56",
    ];
    let binary_row: [&[u8]; 8] = [
        &id,
        "王小明".as_bytes(),
        b"11010519491231002X",
        b"13812345678",
        b"user123456@example.com",
        &income,
        &birth,
        b"branch-56",
    ];
    let mut group = c.benchmark_group("data_row");
    for (label, row, format) in [
        ("text", text_row, WireFormat::Text),
        ("binary", binary_row, WireFormat::Binary),
    ] {
        let mut msg = BytesMut::new();
        wire::encode_data_row(&mut msg, row.iter().map(|v| Some(*v)));
        let columns: Vec<ColumnMask> = masks
            .iter()
            .map(|(i, m, o)| (*i, m.clone(), *o, format))
            .collect();
        let mut out = BytesMut::with_capacity(1 << 16);
        group.bench_function(format!("reference/{label}"), |b| {
            b.iter(|| {
                out.clear();
                let values = wire::data_row(black_box(&msg)).unwrap_or_default();
                let mut masked: Vec<Option<Vec<u8>>> = Vec::with_capacity(values.len());
                for (i, v) in values.iter().enumerate() {
                    masked.push(match columns.iter().find(|c| c.0 == i) {
                        Some((_, m, o, f)) => m.apply(*v, *o, *f).ok().flatten(),
                        None => v.map(<[u8]>::to_vec),
                    });
                }
                wire::encode_data_row(&mut out, masked.iter().map(|v| v.as_deref()));
            })
        });
        group.bench_function(format!("one_pass/{label}"), |b| {
            b.iter(|| {
                out.clear();
                datarow::mask_data_row(black_box(&msg), &columns, &mut out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, masks, rows);
criterion_main!(benches);
