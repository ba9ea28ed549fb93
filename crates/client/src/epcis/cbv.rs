//! The GS1 Core Business Vocabulary (CBV 2.0) names qtrace reads and
//! writes: business steps, dispositions, business transaction and
//! source/destination types, given as short names, EPCIS 1.x URNs or CBV 2.0
//! web URIs.

use super::*;

/// CBV 2.0 business steps (the short names the EPCIS JSON schema lists).
pub const BIZ_STEPS: &[&str] = &[
    "accepting",
    "arriving",
    "assembling",
    "collecting",
    "commissioning",
    "consigning",
    "creating_class_instance",
    "cycle_counting",
    "decommissioning",
    "departing",
    "destroying",
    "disassembling",
    "dispensing",
    "encoding",
    "entering_exiting",
    "holding",
    "inspecting",
    "installing",
    "killing",
    "loading",
    "other",
    "packing",
    "picking",
    "receiving",
    "removing",
    "repackaging",
    "repairing",
    "replacing",
    "reserving",
    "retail_selling",
    "shipping",
    "staging_outbound",
    "stock_taking",
    "stocking",
    "storing",
    "transporting",
    "unloading",
    "unpacking",
    "void_shipping",
    "sensor_reporting",
    "sampling",
];

/// CBV 2.0 dispositions.
pub const DISPOSITIONS: &[&str] = &[
    "active",
    "container_closed",
    "damaged",
    "destroyed",
    "dispensed",
    "disposed",
    "encoded",
    "expired",
    "in_progress",
    "in_transit",
    "inactive",
    "no_pedigree_match",
    "non_sellable_other",
    "partially_dispensed",
    "recalled",
    "reserved",
    "retail_sold",
    "returned",
    "sellable_accessible",
    "sellable_not_accessible",
    "stolen",
    "unknown",
    "available",
    "completeness_verified",
    "completeness_inferred",
    "conformant",
    "container_open",
    "mismatch_instance",
    "mismatch_class",
    "mismatch_quantity",
    "needs_replacement",
    "non_conformant",
    "unavailable",
];

/// CBV 2.0 business transaction types.
pub const BIZ_TRANSACTION_TYPES: &[&str] = &[
    "bol",
    "cert",
    "desadv",
    "inv",
    "pedigree",
    "po",
    "poc",
    "prodorder",
    "recadv",
    "rma",
    "testprd",
    "testres",
    "upevt",
];

/// The URI forms of one CBV vocabulary: the EPCIS 1.x URN and the CBV 2.0
/// web URI prefixes.
pub(super) struct Vocabulary {
    urn: &'static str,
    web: &'static str,
}

pub(super) const BIZ_STEP: Vocabulary = Vocabulary { urn: "urn:epcglobal:cbv:bizstep:", web: "BizStep-" };
pub(super) const DISPOSITION: Vocabulary = Vocabulary { urn: "urn:epcglobal:cbv:disp:", web: "Disp-" };
pub(super) const BTT: Vocabulary = Vocabulary { urn: "urn:epcglobal:cbv:btt:", web: "BTT-" };
pub(super) const SDT: Vocabulary = Vocabulary { urn: "urn:epcglobal:cbv:sdt:", web: "SDT-" };

/// The short CBV name of a vocabulary value given in any of its forms
/// (`shipping`, `urn:epcglobal:cbv:bizstep:shipping`,
/// `https://ref.gs1.org/cbv/BizStep-shipping`); other values unchanged.
pub(super) fn cbv_short(value: &str, vocabulary: &Vocabulary) -> String {
    if let Some(short) = value.strip_prefix(vocabulary.urn) {
        return short.to_owned();
    }
    for base in ["https://ref.gs1.org/cbv/", "http://ref.gs1.org/cbv/", "https://gs1.org/voc/", "cbv:", "gs1:"] {
        if let Some(short) = value.strip_prefix(base).and_then(|rest| rest.strip_prefix(vocabulary.web)) {
            return short.to_owned();
        }
    }
    value.to_owned()
}

/// Whether a URI may stand for a vocabulary value of its own (the schema's
/// `vocab-other-uri`: not in the CBV's own namespaces).
pub(super) fn other_vocabulary_uri(value: &str) -> bool {
    is_uri(value)
        && !value.starts_with("urn:epcglobal:cbv")
        && !value.starts_with("http://ns.gs1.org/cbv/")
        && !value.starts_with("https://ns.gs1.org/cbv/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_values_in_every_form() {
        let cases: &[(&str, &Vocabulary, &str)] = &[
            ("shipping", &BIZ_STEP, "shipping"),
            ("urn:epcglobal:cbv:bizstep:shipping", &BIZ_STEP, "shipping"),
            ("https://ref.gs1.org/cbv/BizStep-retail_selling", &BIZ_STEP, "retail_selling"),
            ("http://ref.gs1.org/cbv/BizStep-receiving", &BIZ_STEP, "receiving"),
            ("https://gs1.org/voc/BizStep-commissioning", &BIZ_STEP, "commissioning"),
            ("cbv:BizStep-inspecting", &BIZ_STEP, "inspecting"),
            ("gs1:Disp-recalled", &DISPOSITION, "recalled"),
            ("urn:epcglobal:cbv:disp:in_transit", &DISPOSITION, "in_transit"),
            ("urn:epcglobal:cbv:btt:po", &BTT, "po"),
            ("https://ref.gs1.org/cbv/SDT-owning_party", &SDT, "owning_party"),
            // Another vocabulary's form, or another vocabulary: unchanged.
            ("urn:epcglobal:cbv:disp:in_transit", &BIZ_STEP, "urn:epcglobal:cbv:disp:in_transit"),
            ("https://ns.example.com/step/x", &BIZ_STEP, "https://ns.example.com/step/x"),
            ("", &BIZ_STEP, ""),
        ];
        for (value, vocabulary, want) in cases {
            assert_eq!(cbv_short(value, vocabulary), *want, "{value}");
        }
        let others = [
            ("https://ns.example.com/disp/sold-out", true),
            ("urn:epcglobal:cbv:disp:recalled", false),
            ("https://ns.gs1.org/cbv/Disp-active", false),
            ("http://ns.gs1.org/cbv/BizStep-x", false),
            ("sold out", false),
        ];
        for (value, want) in others {
            assert_eq!(other_vocabulary_uri(value), want, "{value}");
        }
        for list in [BIZ_STEPS, DISPOSITIONS, BIZ_TRANSACTION_TYPES] {
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "a CBV list names a value twice");
        }
    }
}
