//! C-FIND (PS3.4 C.4.1) over the index Django's migrations own (pacs_patient, pacs_study, pacs_series,
//! pacs_instance; noctis_pro/pacs/models.py): the Patient Root and Study Root information models and their
//! levels, the keys the index keeps per level, the identifier → parameterised SQL translation, and the
//! response identifiers.
//!
//! Matching is QIDO-RS's (fastapi_app/dicomweb/qido.py), so a C-FIND and a QIDO search with the same values
//! find the same objects:
//! - UID keys: one UID or a list (backslash-separated), each checked like a stored UID; no wildcards.
//! - text (PatientID, AccessionNumber, StudyID, Modality, descriptions…): the whole value, case-sensitive;
//!   `*` matches any run of characters and `?` one character.
//! - person names (PatientName, ReferringPhysicianName): as text but case-insensitive.
//! - dates (YYYYMMDD, or a range `A-B`, `A-`, `-B`, bounds included) and times (HH[MM[SS[.F]]] or a
//!   range; a partial time covers its whole hour or minute); date and time are matched separately.
//! - numbers (SeriesNumber, InstanceNumber): one integer. PatientSex: the exact value.
//! - ModalitiesInStudy: one code or a list; a study matches when it has any of them.
//! - an empty value, or one made only of `*`, is universal matching: the key is returned, nothing filtered.
//!
//! Keys the index does not keep are returned empty (and the pending status says so: 0xFF01); keys of
//! levels below the query level are returned empty and not matched. Higher-level unique keys are matched
//! when given and not required (a search across patients or studies is answered, not refused).
//!
//! Every value reaches PostgreSQL as a bind parameter; the SQL text is assembled only from the constant
//! fragments of the key table below.

use std::fmt;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxIndex;
use tokio_postgres::types::ToSql;

/// A query/retrieve level (QueryRetrieveLevel, 0008,0052).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    pub fn parse(value: &str) -> Option<Level> {
        match value.trim() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// A query/retrieve information model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    PatientRoot,
    StudyRoot,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::PatientRoot => "Patient Root",
            Model::StudyRoot => "Study Root",
        }
    }

    pub fn has_level(self, level: Level) -> bool {
        self == Model::PatientRoot || level != Level::Patient
    }

    /// The level a key belongs to in this model: the Study Root has no patient level, its patient
    /// attributes are study attributes.
    fn level_of(self, key: &Key) -> Level {
        if self == Model::StudyRoot && key.level == Level::Patient {
            Level::Study
        } else {
            key.level
        }
    }
}

/// How a key's value is matched (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    Uid,
    Text,
    Name,
    Exact,
    Date,
    Time,
    Number,
    Modalities,
    /// Returned, never matched.
    ReturnOnly,
}

/// A key the index keeps: its level, the SQL expression returning it as text, and the column it is matched
/// on.
#[derive(Debug)]
pub struct Key {
    pub keyword: &'static str,
    pub tag: Tag,
    pub vr: VR,
    pub level: Level,
    select: &'static str,
    column: &'static str,
    pub matching: Matching,
}

const fn key(
    keyword: &'static str,
    tag: Tag,
    vr: VR,
    level: Level,
    select: &'static str,
    column: &'static str,
    matching: Matching,
) -> Key {
    Key {
        keyword,
        tag,
        vr,
        level,
        select,
        column,
        matching,
    }
}

use Level::{Image, Patient, Series, Study};
use Matching::*;

/// The keys of each level (PS3.4 C.6.1.1 and C.6.2.1), as the index keeps them.
pub static KEYS: &[Key] = &[
    key(
        "PatientName",
        tags::PATIENT_NAME,
        VR::PN,
        Patient,
        "p.patient_name",
        "upper(p.patient_name)",
        Name,
    ),
    key(
        "PatientID",
        tags::PATIENT_ID,
        VR::LO,
        Patient,
        "p.patient_id",
        "p.patient_id",
        Text,
    ),
    key(
        "IssuerOfPatientID",
        tags::ISSUER_OF_PATIENT_ID,
        VR::LO,
        Patient,
        "p.issuer_of_patient_id",
        "p.issuer_of_patient_id",
        Text,
    ),
    key(
        "PatientBirthDate",
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        Patient,
        "to_char(p.birth_date, 'YYYYMMDD')",
        "p.birth_date",
        Date,
    ),
    key(
        "PatientSex",
        tags::PATIENT_SEX,
        VR::CS,
        Patient,
        "p.sex",
        "p.sex",
        Exact,
    ),
    key(
        "NumberOfPatientRelatedStudies",
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        VR::IS,
        Patient,
        "(SELECT count(*) FROM pacs_study x WHERE x.patient_id = p.id AND COALESCE(x.facility_id, 0) = ANY($1::int8[]))::text",
        "",
        ReturnOnly,
    ),
    key(
        "NumberOfPatientRelatedSeries",
        tags::NUMBER_OF_PATIENT_RELATED_SERIES,
        VR::IS,
        Patient,
        "(SELECT coalesce(sum(x.number_of_series), 0) FROM pacs_study x WHERE x.patient_id = p.id AND COALESCE(x.facility_id, 0) = ANY($1::int8[]))::text",
        "",
        ReturnOnly,
    ),
    key(
        "NumberOfPatientRelatedInstances",
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
        VR::IS,
        Patient,
        "(SELECT coalesce(sum(x.number_of_instances), 0) FROM pacs_study x WHERE x.patient_id = p.id AND COALESCE(x.facility_id, 0) = ANY($1::int8[]))::text",
        "",
        ReturnOnly,
    ),
    key(
        "StudyInstanceUID",
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        Study,
        "st.study_instance_uid",
        "st.study_instance_uid",
        Uid,
    ),
    key(
        "StudyDate",
        tags::STUDY_DATE,
        VR::DA,
        Study,
        "to_char(st.study_date, 'YYYYMMDD')",
        "st.study_date",
        Date,
    ),
    key(
        "StudyTime",
        tags::STUDY_TIME,
        VR::TM,
        Study,
        "to_char(st.study_time, 'HH24MISS.US')",
        "st.study_time",
        Time,
    ),
    key(
        "AccessionNumber",
        tags::ACCESSION_NUMBER,
        VR::SH,
        Study,
        "st.accession_number",
        "st.accession_number",
        Text,
    ),
    key(
        "StudyID",
        tags::STUDY_ID,
        VR::SH,
        Study,
        "st.study_id",
        "st.study_id",
        Text,
    ),
    key(
        "ReferringPhysicianName",
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        Study,
        "st.referring_physician_name",
        "upper(st.referring_physician_name)",
        Name,
    ),
    key(
        "StudyDescription",
        tags::STUDY_DESCRIPTION,
        VR::LO,
        Study,
        "st.study_description",
        "st.study_description",
        Text,
    ),
    key(
        "InstitutionName",
        tags::INSTITUTION_NAME,
        VR::LO,
        Study,
        "st.institution_name",
        "st.institution_name",
        Text,
    ),
    key(
        "ModalitiesInStudy",
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        Study,
        "st.modalities_in_study",
        "st.modalities_in_study",
        Modalities,
    ),
    key(
        "NumberOfStudyRelatedSeries",
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        VR::IS,
        Study,
        "st.number_of_series::text",
        "",
        ReturnOnly,
    ),
    key(
        "NumberOfStudyRelatedInstances",
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        VR::IS,
        Study,
        "st.number_of_instances::text",
        "",
        ReturnOnly,
    ),
    key(
        "SeriesInstanceUID",
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        Series,
        "se.series_instance_uid",
        "se.series_instance_uid",
        Uid,
    ),
    key(
        "Modality",
        tags::MODALITY,
        VR::CS,
        Series,
        "se.modality",
        "se.modality",
        Text,
    ),
    key(
        "SeriesNumber",
        tags::SERIES_NUMBER,
        VR::IS,
        Series,
        "se.series_number::text",
        "se.series_number",
        Number,
    ),
    key(
        "SeriesDescription",
        tags::SERIES_DESCRIPTION,
        VR::LO,
        Series,
        "se.series_description",
        "se.series_description",
        Text,
    ),
    key(
        "BodyPartExamined",
        tags::BODY_PART_EXAMINED,
        VR::CS,
        Series,
        "se.body_part_examined",
        "se.body_part_examined",
        Text,
    ),
    key(
        "SeriesDate",
        tags::SERIES_DATE,
        VR::DA,
        Series,
        "to_char(se.series_date, 'YYYYMMDD')",
        "se.series_date",
        Date,
    ),
    key(
        "SeriesTime",
        tags::SERIES_TIME,
        VR::TM,
        Series,
        "to_char(se.series_time, 'HH24MISS.US')",
        "se.series_time",
        Time,
    ),
    key(
        "NumberOfSeriesRelatedInstances",
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        VR::IS,
        Series,
        "se.number_of_instances::text",
        "",
        ReturnOnly,
    ),
    key(
        "SOPInstanceUID",
        tags::SOP_INSTANCE_UID,
        VR::UI,
        Image,
        "i.sop_instance_uid",
        "i.sop_instance_uid",
        Uid,
    ),
    key(
        "SOPClassUID",
        tags::SOP_CLASS_UID,
        VR::UI,
        Image,
        "i.sop_class_uid",
        "i.sop_class_uid",
        Uid,
    ),
    key(
        "InstanceNumber",
        tags::INSTANCE_NUMBER,
        VR::IS,
        Image,
        "i.instance_number::text",
        "i.instance_number",
        Number,
    ),
    key("Rows", tags::ROWS, VR::US, Image, "i.rows::text", "", ReturnOnly),
    key(
        "Columns",
        tags::COLUMNS,
        VR::US,
        Image,
        "i.columns::text",
        "",
        ReturnOnly,
    ),
    key(
        "NumberOfFrames",
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        Image,
        "i.number_of_frames::text",
        "",
        ReturnOnly,
    ),
    key(
        "AvailableTransferSyntaxUID",
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        VR::UI,
        Image,
        "i.transfer_syntax_uid",
        "",
        ReturnOnly,
    ),
];

/// The unique key of each level.
pub fn unique_key(level: Level) -> &'static Key {
    let tag = match level {
        Patient => tags::PATIENT_ID,
        Study => tags::STUDY_INSTANCE_UID,
        Series => tags::SERIES_INSTANCE_UID,
        Image => tags::SOP_INSTANCE_UID,
    };
    key_by_tag(tag).expect("unique keys are in KEYS")
}

pub fn key_by_tag(tag: Tag) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.tag == tag)
}

/// Joins per level: each level's rows with every level above.
fn from_clause(level: Level) -> &'static str {
    match level {
        Patient => "pacs_patient p",
        Study => "pacs_study st JOIN pacs_patient p ON p.id = st.patient_id",
        Series => {
            "pacs_series se JOIN pacs_study st ON st.id = se.study_id JOIN pacs_patient p ON p.id = st.patient_id"
        }
        Image => {
            "pacs_instance i JOIN pacs_series se ON se.id = i.series_id JOIN pacs_study st ON st.id = se.study_id \
             JOIN pacs_patient p ON p.id = st.patient_id"
        }
    }
}

/// QIDO-RS's order (newest study first, then series and instance numbers), so both list alike.
fn order_clause(level: Level) -> &'static str {
    match level {
        Patient => "p.patient_name, p.id",
        Study => "st.study_date DESC, st.study_time DESC, st.id DESC",
        Series => {
            "st.study_date DESC, st.study_time DESC, st.id DESC, se.series_number ASC NULLS LAST, se.id ASC"
        }
        Image => {
            "st.study_date DESC, st.study_time DESC, st.id DESC, se.series_number ASC NULLS LAST, se.id ASC, \
             i.instance_number ASC NULLS LAST, i.id ASC"
        }
    }
}

/// Why an identifier cannot be answered. `status` tells which DICOM failure it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentifierError {
    /// Cannot be decoded at all.
    Undecodable(String),
    /// QueryRetrieveLevel absent or empty.
    MissingLevel,
    /// A level this model does not have, or no level at all.
    UnknownLevel { model: Model, value: String },
    /// A C-MOVE / C-GET identifier without the unique key of its level.
    MissingUniqueKey { level: Level, keyword: &'static str },
    /// A matching value the key's matching cannot use.
    BadValue {
        keyword: &'static str,
        value: String,
        problem: &'static str,
    },
}

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifierError::Undecodable(e) => write!(f, "cannot decode identifier: {e}"),
            IdentifierError::MissingLevel => write!(f, "QueryRetrieveLevel missing"),
            IdentifierError::UnknownLevel { model, value } => {
                write!(f, "QueryRetrieveLevel {value:?} not in {}", model.name())
            }
            IdentifierError::MissingUniqueKey { level, keyword } => {
                write!(f, "{} level needs {keyword}", level.name())
            }
            IdentifierError::BadValue {
                keyword,
                value,
                problem,
            } => {
                let shown: String = value.chars().take(24).collect();
                write!(f, "{keyword} {shown:?} {problem}")
            }
        }
    }
}

impl IdentifierError {
    /// The C-FIND / C-MOVE / C-GET failure status (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
    pub fn status(&self) -> u16 {
        match self {
            IdentifierError::MissingLevel
            | IdentifierError::UnknownLevel { .. }
            | IdentifierError::MissingUniqueKey { .. } => crate::status::IDENTIFIER_DOES_NOT_MATCH,
            IdentifierError::Undecodable(_) => crate::status::UNABLE_TO_PROCESS,
            IdentifierError::BadValue { .. } => crate::status::UNABLE_TO_PROCESS_VALUE,
        }
    }
}

/// One key of a request identifier.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedKey {
    pub tag: Tag,
    pub vr: VR,
    /// The value as text (trailing padding removed); None for a sequence.
    pub value: Option<String>,
}

/// A decoded request identifier: its level and every key it holds, in tag order.
#[derive(Debug, Clone)]
pub struct Identifier {
    pub level: Level,
    pub keys: Vec<RequestedKey>,
}

impl Identifier {
    /// Read the identifier a C-FIND / C-MOVE / C-GET request carried in `transfer_syntax`.
    pub fn decode(bytes: &[u8], transfer_syntax: &str, model: Model) -> Result<Identifier, IdentifierError> {
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(transfer_syntax)
            .ok_or_else(|| IdentifierError::Undecodable(format!("transfer syntax {transfer_syntax}")))?;
        let obj = InMemDicomObject::read_dataset_with_ts(bytes, ts)
            .map_err(|e| IdentifierError::Undecodable(e.to_string()))?;
        Identifier::from_object(&obj, model)
    }

    pub fn from_object(obj: &InMemDicomObject, model: Model) -> Result<Identifier, IdentifierError> {
        let mut keys = Vec::new();
        let mut level = None;
        for element in obj.iter() {
            let tag = element.tag();
            let value = match element.value() {
                Value::Primitive(p) => Some(p.to_str().trim_start().to_string()),
                _ => None,
            };
            if tag == tags::QUERY_RETRIEVE_LEVEL {
                level = value.clone().filter(|v| !v.is_empty());
            }
            keys.push(RequestedKey {
                tag,
                vr: element.vr(),
                value,
            });
        }
        let value = level.ok_or(IdentifierError::MissingLevel)?;
        let level = Level::parse(&value)
            .filter(|l| model.has_level(*l))
            .ok_or(IdentifierError::UnknownLevel { model, value })?;
        Ok(Identifier { level, keys })
    }

    pub fn value(&self, tag: Tag) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.tag == tag)
            .and_then(|k| k.value.as_deref())
    }
}

/// A bind parameter (kept as data so tests can read what a query binds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Texts(Vec<String>),
    Int(i32),
    /// Facility ids (the facility rule's bigint[]).
    Ints(Vec<i64>),
}

impl Param {
    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Text(s) => s,
            Param::Texts(v) => v,
            Param::Int(i) => i,
            Param::Ints(v) => v,
        }
    }

    /// The bind with its PostgreSQL type, so a query needs no Parse/Describe round trip (query_typed).
    pub fn typed(&self) -> (&(dyn ToSql + Sync), tokio_postgres::types::Type) {
        use tokio_postgres::types::Type;
        let ty = match self {
            Param::Text(_) => Type::TEXT,
            Param::Texts(_) => Type::TEXT_ARRAY,
            Param::Int(_) => Type::INT4,
            Param::Ints(_) => Type::INT8_ARRAY,
        };
        (self.as_sql(), ty)
    }
}

/// WHERE conditions and their binds, numbered $1.. in order.
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    pub sql: Vec<String>,
    pub params: Vec<Param>,
}

impl Conditions {
    fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }

    fn push(&mut self, column: &str, op: &str, param: Param, cast: &str) {
        let n = self.bind(param);
        self.sql.push(format!("{column} {op}{n}{cast}"));
    }

    /// Add the condition for matching `key` against `value`; universal values add nothing.
    pub fn add(&mut self, key: &Key, value: &str) -> Result<(), IdentifierError> {
        let value = value.trim_end();
        if value.is_empty() || value.chars().all(|c| c == '*') || key.matching == ReturnOnly {
            return Ok(());
        }
        let bad = |problem: &'static str| IdentifierError::BadValue {
            keyword: key.keyword,
            value: value.to_string(),
            problem,
        };
        if value.chars().count() > 256 {
            return Err(bad("is longer than 256 characters"));
        }
        let col = key.column;
        match key.matching {
            Uid => {
                let uids = uid_list(value).map_err(bad)?;
                self.push(col, "= ANY(", Param::Texts(uids), "::text[])");
            }
            Text => {
                if has_wildcard(value) {
                    self.push(col, "LIKE ", Param::Text(like_pattern(value)), "::text");
                } else {
                    self.push(col, "= ", Param::Text(value.to_string()), "::text");
                }
            }
            Name => {
                // Like QIDO: the upper-cased value as a pattern, so a plain value matches the whole name
                // case-insensitively (through the upper(...) trigram index).
                self.push(
                    col,
                    "ILIKE ",
                    Param::Text(like_pattern(&value.to_uppercase())),
                    "::text",
                );
            }
            Exact => self.push(col, "= ", Param::Text(value.to_string()), "::text"),
            Number => {
                let n: i32 = value.trim().parse().map_err(|_| bad("is not an integer"))?;
                self.push(col, "= ", Param::Int(n), "::int4");
            }
            Modalities => {
                let codes: Vec<String> = value
                    .split('\\')
                    .map(|c| c.trim().to_uppercase())
                    .filter(|c| !c.is_empty())
                    .collect();
                if !codes.iter().all(|c| modality_code(c)) {
                    return Err(bad("is not a modality code or list of them"));
                }
                let narrowing = (codes.len() == 1).then(|| format!("%{}%", like_pattern(&codes[0])));
                let n = self.bind(Param::Texts(codes));
                self.sql
                    .push(format!("string_to_array({col}, '\\') && {n}::text[]"));
                if let Some(pattern) = narrowing {
                    // Lets the trigram index narrow the scan when one modality is asked (as QIDO does).
                    self.push(col, "LIKE ", Param::Text(pattern), "::text");
                }
            }
            Date => {
                let (low, high) =
                    range(value, date_bounds).map_err(|_| bad("is not a date (YYYYMMDD, or a range A-B)"))?;
                if let Some(low) = low {
                    self.push(col, ">= (", Param::Text(low), "::text)::date");
                }
                if let Some(high) = high {
                    self.push(col, "<= (", Param::Text(high), "::text)::date");
                }
            }
            Time => {
                let (low, high) =
                    range(value, time_bounds).map_err(|_| bad("is not a time (HHMMSS, or a range A-B)"))?;
                if let Some(low) = low {
                    self.push(col, ">= (", Param::Text(low), "::text)::time");
                }
                if let Some(high) = high {
                    self.push(col, "<= (", Param::Text(high), "::text)::time");
                }
            }
            ReturnOnly => {}
        }
        Ok(())
    }

    /// The facility rule (noctis_pro/contracts/access.py): only studies of `facilities` (0: unassigned) are
    /// matched; at PATIENT level, patients with such a study. Bound first, as `$1`, because the patient-level
    /// counts of KEYS refer to it there.
    fn facility_rule(&mut self, level: Level, facilities: &[i64]) {
        debug_assert!(self.params.is_empty(), "the facility rule is $1");
        let n = self.bind(Param::Ints(facilities.to_vec()));
        self.sql.push(if level == Patient {
            format!(
                "EXISTS (SELECT 1 FROM pacs_study v WHERE v.patient_id = p.id \
                 AND COALESCE(v.facility_id, 0) = ANY({n}::int8[]))"
            )
        } else {
            format!("COALESCE(st.facility_id, 0) = ANY({n}::int8[])")
        });
    }

    fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }
}

fn has_wildcard(value: &str) -> bool {
    value.contains(['*', '?'])
}

/// A DICOM wildcard value as a LIKE pattern: `*` any run, `?` one character, everything else literal.
pub fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '\\' | '%' | '_' => {
                out.push('\\');
                out.push(c);
            }
            '*' => out.push('%'),
            '?' => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

fn modality_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 16
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == ' ')
}

fn uid_list(value: &str) -> Result<Vec<String>, &'static str> {
    let uids: Vec<String> = value
        .split('\\')
        .map(|u| u.trim().trim_end_matches('\0').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if uids.is_empty() {
        return Err("is not a UID list");
    }
    for uid in &uids {
        crate::store::uid_check(uid).map_err(|_| "is not a UID or a list of UIDs")?;
    }
    Ok(uids)
}

type Bounds = fn(&str) -> Result<(String, String), ()>;

/// A single value (both bounds from it) or a range `A-B`, `A-`, `-B`.
fn range(value: &str, bounds: Bounds) -> Result<(Option<String>, Option<String>), ()> {
    let value = value.trim();
    match value.split_once('-') {
        None => {
            let (low, high) = bounds(value)?;
            Ok((Some(low), Some(high)))
        }
        Some((first, last)) => {
            let (first, last) = (first.trim(), last.trim());
            if first.is_empty() && last.is_empty() {
                return Err(());
            }
            let low = if first.is_empty() {
                None
            } else {
                Some(bounds(first)?.0)
            };
            let high = if last.is_empty() {
                None
            } else {
                Some(bounds(last)?.1)
            };
            if let (Some(l), Some(h)) = (&low, &high) {
                // Both are zero-padded ISO text of the same shape, so text order is time order.
                if l > h {
                    return Err(());
                }
            }
            Ok((low, high))
        }
    }
}

/// YYYYMMDD → ("YYYY-MM-DD", same), checked to be a real date.
fn date_bounds(text: &str) -> Result<(String, String), ()> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let (y, m, d): (u32, u32, u32) = (
        text[..4].parse().map_err(|_| ())?,
        text[4..6].parse().map_err(|_| ())?,
        text[6..].parse().map_err(|_| ())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(()),
    };
    if y == 0 || d == 0 || d > days {
        return Err(());
    }
    let iso = format!("{y:04}-{m:02}-{d:02}");
    Ok((iso.clone(), iso))
}

/// HH[MM[SS[.F{1,6}]]] (colons allowed) → the first and last instant it covers, as "HH:MM:SS.FFFFFF".
fn time_bounds(text: &str) -> Result<(String, String), ()> {
    let text = text.replace(':', "");
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w.to_string(), Some(f.to_string())),
        None => (text, None),
    };
    if !matches!(whole.len(), 2 | 4 | 6) || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    if let Some(f) = &fraction {
        if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) || whole.len() != 6 {
            return Err(());
        }
    }
    let part = |i: usize| -> Option<u32> { whole.get(i..i + 2).map(|s| s.parse().unwrap_or(99)) };
    let hour = part(0).ok_or(())?;
    let minute = part(2);
    let second = part(4);
    if hour > 23 || minute.is_some_and(|m| m > 59) || second.is_some_and(|s| s > 60) {
        return Err(());
    }
    let low_fraction = fraction
        .as_deref()
        .map(|f| format!("{f:0<6}"))
        .unwrap_or_else(|| "000000".into());
    let high_fraction = fraction
        .as_deref()
        .map(|f| format!("{f:0<6}"))
        .unwrap_or_else(|| "999999".into());
    let low = format!(
        "{hour:02}:{:02}:{:02}.{low_fraction}",
        minute.unwrap_or(0),
        second.unwrap_or(0).min(59)
    );
    let high = format!(
        "{hour:02}:{:02}:{:02}.{high_fraction}",
        minute.unwrap_or(59),
        second.unwrap_or(59).min(59)
    );
    Ok((low, high))
}

/// Where a response key's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The nth selected column.
    Column(usize),
    /// pacs_instance.attrs[keyword] (IMAGE level).
    Attr(String),
    Fixed(String),
    Empty,
    EmptySequence,
}

#[derive(Debug, Clone, PartialEq)]
struct ReturnKey {
    tag: Tag,
    vr: VR,
    source: Source,
}

/// A C-FIND ready to run: SQL, binds, and how each row becomes a response identifier.
#[derive(Debug, Clone)]
pub struct FindQuery {
    pub level: Level,
    pub sql: String,
    /// The select list: row values come in this order.
    pub columns: Vec<&'static str>,
    pub params: Vec<Param>,
    returns: Vec<ReturnKey>,
    /// Index of the attrs column, when IMAGE-level attributes outside the key table were asked for.
    attrs_column: Option<usize>,
    /// Whether a requested key is one the index does not keep (pending status 0xFF01).
    pub unsupported_keys: bool,
}

/// The index's values for one match, as text (NULL → None), in `FindQuery` select order.
pub type Row = Vec<Option<String>>;

/// Build the C-FIND for `identifier` in `model`. `ae_title` answers RetrieveAETitle; only studies of
/// `facilities` (the calling AE's, 0 for unassigned) are matched and counted.
pub fn find_query(
    identifier: &Identifier,
    model: Model,
    ae_title: &str,
    facilities: &[i64],
) -> Result<FindQuery, IdentifierError> {
    let level = identifier.level;
    let mut conditions = Conditions::default();
    conditions.facility_rule(level, facilities);
    let mut select: Vec<&'static str> = Vec::new();
    let mut returns = Vec::new();
    let mut unsupported_keys = false;
    let mut attrs_column = None;
    fn column(expr: &'static str, select: &mut Vec<&'static str>) -> usize {
        match select.iter().position(|s| *s == expr) {
            Some(i) => i,
            None => {
                select.push(expr);
                select.len() - 1
            }
        }
    }
    for requested in &identifier.keys {
        let tag = requested.tag;
        let source = if tag == tags::QUERY_RETRIEVE_LEVEL {
            Source::Fixed(level.name().to_string())
        } else if tag == tags::SPECIFIC_CHARACTER_SET {
            continue; // decided per response from the values it carries
        } else if tag == tags::RETRIEVE_AE_TITLE {
            Source::Fixed(ae_title.to_string())
        } else if tag == tags::INSTANCE_AVAILABILITY {
            Source::Fixed("ONLINE".to_string())
        } else if let Some(key) = key_by_tag(tag) {
            if model.level_of(key) > level {
                // Keys of lower levels: neither matched nor known at this level.
                Source::Empty
            } else {
                if let Some(value) = &requested.value {
                    conditions.add(key, value)?;
                }
                Source::Column(column(key.select, &mut select))
            }
        } else if requested.value.is_none() {
            unsupported_keys = true;
            Source::EmptySequence
        } else if level == Image && attr_keyword(tag).is_some() {
            let keyword = attr_keyword(tag).expect("checked").to_string();
            attrs_column = Some(column("i.attrs::text", &mut select));
            Source::Attr(keyword)
        } else {
            unsupported_keys = true;
            Source::Empty
        };
        returns.push(ReturnKey {
            tag,
            vr: requested.vr,
            source,
        });
    }
    // The unique keys of the query level and those above are always returned (PS3.4 C.4.1.1.3.2).
    let mut levels = vec![Study, Series, Image];
    if model == Model::PatientRoot {
        levels.insert(0, Patient);
    }
    for l in levels.into_iter().filter(|l| *l <= level) {
        let key = unique_key(l);
        if !returns.iter().any(|r| r.tag == key.tag) {
            let i = column(key.select, &mut select);
            returns.push(ReturnKey {
                tag: key.tag,
                vr: key.vr,
                source: Source::Column(i),
            });
        }
    }
    if !returns.iter().any(|r| r.tag == tags::QUERY_RETRIEVE_LEVEL) {
        returns.push(ReturnKey {
            tag: tags::QUERY_RETRIEVE_LEVEL,
            vr: VR::CS,
            source: Source::Fixed(level.name().to_string()),
        });
    }
    returns.sort_by_key(|r| r.tag);
    let sql = format!(
        "SELECT {} FROM {}{} ORDER BY {}",
        select.join(", "),
        from_clause(level),
        conditions.where_clause(),
        order_clause(level)
    );
    Ok(FindQuery {
        level,
        sql,
        columns: select,
        params: conditions.params,
        returns,
        attrs_column,
        unsupported_keys,
    })
}

/// The keyword of an attribute the receipt copies into pacs_instance.attrs.
fn attr_keyword(tag: Tag) -> Option<&'static str> {
    let entry = StandardDataDictionary.by_tag(tag)?;
    crate::store::ATTR_KEYWORDS
        .iter()
        .copied()
        .find(|k| *k == entry.alias())
}

/// The VR the dictionary gives a tag (for keys sent in Implicit VR, whose VR was not on the wire).
pub fn dictionary_vr(tag: Tag) -> Option<VR> {
    match StandardDataDictionary.by_tag(tag)?.vr() {
        VirtualVr::Exact(vr) => Some(vr),
        _ => None,
    }
}

/// DICOM TM from PostgreSQL's `HH24MISS.US`: fraction trimmed ("101500.000000" → "101500").
fn tm(value: &str) -> String {
    match value.split_once('.') {
        Some((whole, fraction)) => {
            let f = fraction.trim_end_matches('0');
            if f.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{f}")
            }
        }
        None => value.to_string(),
    }
}

fn primitive(vr: VR, text: &str) -> PrimitiveValue {
    if text.is_empty() {
        return PrimitiveValue::Empty;
    }
    let parts = text.split('\\').map(str::trim);
    let numbers = match vr {
        VR::US => parts
            .map(|p| p.parse::<u16>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::U16(v.into())),
        VR::SS => parts
            .map(|p| p.parse::<i16>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::I16(v.into())),
        VR::UL => parts
            .map(|p| p.parse::<u32>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::U32(v.into())),
        VR::SL => parts
            .map(|p| p.parse::<i32>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::I32(v.into())),
        VR::FL => parts
            .map(|p| p.parse::<f32>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::F32(v.into())),
        VR::FD => parts
            .map(|p| p.parse::<f64>().ok())
            .collect::<Option<Vec<_>>>()
            .map(|v| PrimitiveValue::F64(v.into())),
        _ => return PrimitiveValue::from(text.to_string()),
    };
    numbers.unwrap_or(PrimitiveValue::Empty)
}

impl FindQuery {
    /// The response identifier of one match.
    pub fn response(&self, row: &Row) -> InMemDicomObject {
        let attrs: Option<serde_json::Map<String, serde_json::Value>> = self
            .attrs_column
            .and_then(|i| row.get(i).cloned().flatten())
            .and_then(|text| serde_json::from_str(&text).ok());
        let mut obj = InMemDicomObject::new_empty();
        let mut non_ascii = false;
        for r in &self.returns {
            // A key sent in Implicit VR has the dictionary's VR; UN stays UN only when unknown.
            let vr = if r.vr == VR::UN {
                dictionary_vr(r.tag).unwrap_or(VR::UN)
            } else {
                r.vr
            };
            let text = match &r.source {
                Source::Column(i) => row.get(*i).cloned().flatten().unwrap_or_default(),
                Source::Attr(keyword) => attrs
                    .as_ref()
                    .and_then(|a| a.get(keyword))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                Source::Fixed(s) => s.clone(),
                Source::Empty => String::new(),
                Source::EmptySequence => {
                    obj.put(DataElement::new(
                        r.tag,
                        VR::SQ,
                        Value::from(DataSetSequence::<InMemDicomObject>::empty()),
                    ));
                    continue;
                }
            };
            let text = if vr == VR::TM { tm(&text) } else { text };
            non_ascii |= !text.is_ascii();
            obj.put(DataElement::new(r.tag, vr, primitive(vr, &text)));
        }
        if non_ascii {
            // The index holds Unicode; say so whenever a value is beyond ASCII.
            obj.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from("ISO_IR 192"),
            ));
        }
        obj
    }
}

/// One stored instance a C-MOVE / C-GET sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstance {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    /// Relative to STORAGE_ROOT.
    pub path: String,
}

/// The instances a C-MOVE / C-GET identifier selects (PS3.4 C.4.2.2.1): the unique key of its level is
/// required (a UID list, or at PATIENT level the PatientID); unique keys of higher levels narrow when given.
/// Only instances of studies of `facilities` are selected: others are simply not matched.
pub fn retrieve_query(
    identifier: &Identifier,
    model: Model,
    facilities: &[i64],
) -> Result<(String, Vec<Param>), IdentifierError> {
    let level = identifier.level;
    let own = unique_key(level);
    let given = identifier.value(own.tag).map(str::trim).unwrap_or_default();
    if given.is_empty() || given.chars().all(|c| c == '*') {
        return Err(IdentifierError::MissingUniqueKey {
            level,
            keyword: own.keyword,
        });
    }
    let mut conditions = Conditions::default();
    conditions.facility_rule(Image, facilities);
    for l in [Patient, Study, Series, Image] {
        if l > level || !model.has_level(l) {
            continue;
        }
        let key = unique_key(l);
        if let Some(value) = identifier.value(key.tag) {
            if key.matching == Text && has_wildcard(value) {
                return Err(IdentifierError::BadValue {
                    keyword: key.keyword,
                    value: value.to_string(),
                    problem: "must be a single value to retrieve",
                });
            }
            conditions.add(key, value)?;
        }
    }
    let sql = format!(
        "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.path FROM {}{} ORDER BY {}",
        from_clause(Image),
        conditions.where_clause(),
        order_clause(Image)
    );
    Ok((sql, conditions.params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identifier(level: &str, keys: &[(Tag, VR, &str)]) -> Identifier {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(level),
        ));
        for (tag, vr, value) in keys {
            obj.put(DataElement::new(*tag, *vr, PrimitiveValue::from(*value)));
        }
        Identifier::from_object(&obj, Model::StudyRoot).unwrap()
    }

    fn conditions(key: &str, value: &str) -> Result<Conditions, IdentifierError> {
        let k = KEYS.iter().find(|k| k.keyword == key).unwrap();
        let mut c = Conditions::default();
        c.add(k, value)?;
        Ok(c)
    }

    #[test]
    fn wildcards_become_like_patterns_with_literals_escaped() {
        assert_eq!(like_pattern("DO*^J?NE"), "DO%^J_NE");
        assert_eq!(like_pattern("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn single_value_text_is_exact_and_case_sensitive_wildcards_use_like() {
        let c = conditions("PatientID", "PID-1").unwrap();
        assert_eq!(c.sql, vec!["p.patient_id = $1::text"]);
        assert_eq!(c.params, vec![Param::Text("PID-1".into())]);
        let c = conditions("AccessionNumber", "AC?1*").unwrap();
        assert_eq!(c.sql, vec!["st.accession_number LIKE $1::text"]);
        assert_eq!(c.params, vec![Param::Text("AC_1%".into())]);
    }

    #[test]
    fn names_match_case_insensitively_like_qido() {
        let c = conditions("PatientName", "doe^j*").unwrap();
        assert_eq!(c.sql, vec!["upper(p.patient_name) ILIKE $1::text"]);
        assert_eq!(c.params, vec![Param::Text("DOE^J%".into())]);
        // Without wildcards the whole name must match, still case-insensitively.
        let c = conditions("PatientName", "Doe^Jane").unwrap();
        assert_eq!(c.params, vec![Param::Text("DOE^JANE".into())]);
    }

    #[test]
    fn universal_values_add_no_condition() {
        for value in ["", "*", "**", "   "] {
            assert!(
                conditions("PatientName", value).unwrap().sql.is_empty(),
                "{value:?}"
            );
            assert!(
                conditions("StudyDate", value).unwrap().sql.is_empty(),
                "{value:?}"
            );
            assert!(
                conditions("StudyInstanceUID", value).unwrap().sql.is_empty(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn uid_lists_bind_one_array_and_bad_uids_are_refused() {
        let c = conditions("StudyInstanceUID", "1.2.3\\1.2.4").unwrap();
        assert_eq!(c.sql, vec!["st.study_instance_uid = ANY($1::text[])"]);
        assert_eq!(c.params, vec![Param::Texts(vec!["1.2.3".into(), "1.2.4".into()])]);
        for bad in ["1.2.*", "../etc", "1.2\\x"] {
            let e = conditions("StudyInstanceUID", bad).unwrap_err();
            assert_eq!(e.status(), 0xC001, "{bad}");
            assert!(e.to_string().starts_with("StudyInstanceUID "), "{e}");
        }
    }

    #[test]
    fn date_ranges_bind_iso_bounds_and_open_ends() {
        let c = conditions("StudyDate", "20260101-20260131").unwrap();
        assert_eq!(
            c.sql,
            vec![
                "st.study_date >= ($1::text)::date",
                "st.study_date <= ($2::text)::date"
            ]
        );
        assert_eq!(
            c.params,
            vec![Param::Text("2026-01-01".into()), Param::Text("2026-01-31".into())]
        );
        let c = conditions("StudyDate", "-19991231").unwrap();
        assert_eq!(c.sql, vec!["st.study_date <= ($1::text)::date"]);
        let c = conditions("PatientBirthDate", "19700101").unwrap();
        assert_eq!(
            c.params,
            vec![Param::Text("1970-01-01".into()), Param::Text("1970-01-01".into())]
        );
        for bad in ["2026", "20260230", "20260131-20260101", "-", "2026-01-01"] {
            assert!(conditions("StudyDate", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partial_times_cover_their_hour_or_minute() {
        let c = conditions("StudyTime", "10").unwrap();
        assert_eq!(
            c.params,
            vec![
                Param::Text("10:00:00.000000".into()),
                Param::Text("10:59:59.999999".into())
            ]
        );
        let c = conditions("StudyTime", "1015-101530.5").unwrap();
        assert_eq!(
            c.params,
            vec![
                Param::Text("10:15:00.000000".into()),
                Param::Text("10:15:30.500000".into())
            ]
        );
        assert!(conditions("StudyTime", "25").is_err());
        assert!(conditions("StudyTime", "1").is_err());
    }

    #[test]
    fn modalities_match_any_code_of_a_list() {
        let c = conditions("ModalitiesInStudy", "CT\\mr").unwrap();
        assert_eq!(
            c.sql,
            vec!["string_to_array(st.modalities_in_study, '\\') && $1::text[]"]
        );
        assert_eq!(c.params, vec![Param::Texts(vec!["CT".into(), "MR".into()])]);
        let c = conditions("ModalitiesInStudy", "CT").unwrap();
        assert_eq!(c.params[1], Param::Text("%CT%".into()));
        assert!(conditions("ModalitiesInStudy", "C%").is_err());
    }

    #[test]
    fn numbers_must_be_integers() {
        assert_eq!(
            conditions("SeriesNumber", "3").unwrap().params,
            vec![Param::Int(3)]
        );
        assert_eq!(conditions("SeriesNumber", "x").unwrap_err().status(), 0xC001);
    }

    #[test]
    fn missing_or_unknown_levels_do_not_match_the_model() {
        let obj = InMemDicomObject::new_empty();
        let e = Identifier::from_object(&obj, Model::StudyRoot).unwrap_err();
        assert_eq!(e, IdentifierError::MissingLevel);
        assert_eq!(e.status(), 0xA900);
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("PATIENT"),
        ));
        let e = Identifier::from_object(&obj, Model::StudyRoot).unwrap_err();
        assert_eq!(e.status(), 0xA900);
        assert_eq!(e.to_string(), "QueryRetrieveLevel \"PATIENT\" not in Study Root");
        assert_eq!(
            Identifier::from_object(&obj, Model::PatientRoot).unwrap().level,
            Level::Patient
        );
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("FRAME"),
        ));
        assert!(matches!(
            Identifier::from_object(&obj, Model::PatientRoot),
            Err(IdentifierError::UnknownLevel { .. })
        ));
    }

    /// A row as the database would return it for `q`, from values by select expression.
    fn row(q: &FindQuery, values: &[(&str, &str)]) -> Row {
        q.columns
            .iter()
            .map(|c| values.iter().find(|(k, _)| k == c).map(|(_, v)| v.to_string()))
            .collect()
    }

    #[test]
    fn find_query_selects_requested_and_unique_keys_and_binds_values() {
        let id = identifier(
            "SERIES",
            &[
                (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
                (tags::MODALITY, VR::CS, "CT"),
                (tags::SERIES_DESCRIPTION, VR::LO, ""),
                (tags::SOP_INSTANCE_UID, VR::UI, "9.9"),
                (tags::PATIENT_NAME, VR::PN, "O'Brien*"),
            ],
        );
        let q = find_query(&id, Model::StudyRoot, "NOCTIS", &[0]).unwrap();
        assert_eq!(
            q.columns,
            vec![
                "se.modality",
                "se.series_description",
                "p.patient_name",
                "st.study_instance_uid",
                "se.series_instance_uid"
            ]
        );
        assert!(q
            .sql
            .contains(" FROM pacs_series se JOIN pacs_study st ON st.id = se.study_id JOIN pacs_patient p"));
        assert!(q.sql.contains(
            " WHERE COALESCE(st.facility_id, 0) = ANY($1::int8[]) AND se.modality = $2::text AND \
             upper(p.patient_name) ILIKE $3::text AND st.study_instance_uid = ANY($4::text[]) \
             ORDER BY st.study_date DESC"
        ));
        // The value with a quote is bound, never part of the SQL text.
        assert!(!q.sql.contains("O'B"));
        assert_eq!(q.params[2], Param::Text("O'BRIEN%".into()));
        // A lower-level key (SOPInstanceUID at SERIES) is returned empty and not matched.
        assert!(!q.sql.contains("sop_instance_uid"));
        assert!(!q.unsupported_keys);
        let obj = q.response(&row(
            &q,
            &[
                ("st.study_instance_uid", "1.2.3"),
                ("se.modality", "CT"),
                ("p.patient_name", "O'Brien^Müller"),
                ("se.series_instance_uid", "1.2.3.4"),
            ],
        ));
        let text = |tag| obj.get(tag).map(|e| e.value().to_str().unwrap().to_string());
        assert_eq!(text(tags::QUERY_RETRIEVE_LEVEL).as_deref(), Some("SERIES"));
        assert_eq!(text(tags::SERIES_INSTANCE_UID).as_deref(), Some("1.2.3.4"));
        assert_eq!(text(tags::SERIES_DESCRIPTION).as_deref(), Some(""));
        assert_eq!(text(tags::SOP_INSTANCE_UID).as_deref(), Some(""));
        assert_eq!(text(tags::PATIENT_NAME).as_deref(), Some("O'Brien^Müller"));
        assert_eq!(text(tags::SPECIFIC_CHARACTER_SET).as_deref(), Some("ISO_IR 192"));
    }

    #[test]
    fn patient_root_study_level_and_unknown_keys() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("STUDY"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from("PID-1"),
        ));
        obj.put(DataElement::new(tags::STUDY_TIME, VR::TM, PrimitiveValue::Empty));
        obj.put(DataElement::new(
            tags::OPERATORS_NAME,
            VR::PN,
            PrimitiveValue::Empty,
        ));
        let id = Identifier::from_object(&obj, Model::PatientRoot).unwrap();
        let q = find_query(&id, Model::PatientRoot, "NOCTIS", &[0]).unwrap();
        assert!(q.unsupported_keys);
        assert_eq!(q.params, vec![Param::Ints(vec![0]), Param::Text("PID-1".into())]);
        let r = q.response(&row(
            &q,
            &[
                ("p.patient_id", "PID-1"),
                ("to_char(st.study_time, 'HH24MISS.US')", "101500.000000"),
                ("st.study_instance_uid", "1.2.3"),
            ],
        ));
        assert_eq!(
            r.get(tags::STUDY_TIME).unwrap().value().to_str().unwrap(),
            "101500"
        );
        assert_eq!(
            r.get(tags::STUDY_INSTANCE_UID).unwrap().value().to_str().unwrap(),
            "1.2.3"
        );
        assert_eq!(r.get(tags::OPERATORS_NAME).unwrap().value().to_str().unwrap(), "");
        assert!(r.get(tags::SPECIFIC_CHARACTER_SET).is_none());
    }

    #[test]
    fn image_level_returns_receipt_attributes_and_numbers_in_their_vr() {
        let id = identifier(
            "IMAGE",
            &[
                (tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3"),
                (tags::ROWS, VR::US, ""),
                (tags::SLICE_THICKNESS, VR::DS, ""),
            ],
        );
        let q = find_query(&id, Model::StudyRoot, "NOCTIS", &[0]).unwrap();
        assert!(q.columns.contains(&"i.attrs::text"));
        let r = q.response(&row(
            &q,
            &[
                ("se.series_instance_uid", "1.2.3"),
                ("i.rows::text", "512"),
                ("i.attrs::text", r#"{"SliceThickness": "1.25"}"#),
                ("st.study_instance_uid", "1.2"),
                ("i.sop_instance_uid", "1.2.3.4.5"),
            ],
        ));
        assert_eq!(r.get(tags::ROWS).unwrap().value().to_int::<u16>().unwrap(), 512);
        assert_eq!(r.get(tags::ROWS).unwrap().vr(), VR::US);
        assert_eq!(
            r.get(tags::SLICE_THICKNESS).unwrap().value().to_str().unwrap(),
            "1.25"
        );
        assert_eq!(
            r.get(tags::SOP_INSTANCE_UID).unwrap().value().to_str().unwrap(),
            "1.2.3.4.5"
        );
    }

    #[test]
    fn retrieve_needs_the_unique_key_of_its_level() {
        let id = identifier("SERIES", &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3")]);
        let e = retrieve_query(&id, Model::StudyRoot, &[0]).unwrap_err();
        assert_eq!(e.to_string(), "SERIES level needs SeriesInstanceUID");
        assert_eq!(e.status(), 0xA900);
        let id = identifier(
            "SERIES",
            &[
                (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
                (tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.1\\1.2.3.2"),
            ],
        );
        let (sql, params) = retrieve_query(&id, Model::StudyRoot, &[0]).unwrap();
        assert!(sql.contains(
            "WHERE COALESCE(st.facility_id, 0) = ANY($1::int8[]) AND st.study_instance_uid = ANY($2::text[]) \
             AND se.series_instance_uid = ANY($3::text[])"
        ));
        assert_eq!(params[2], Param::Texts(vec!["1.2.3.1".into(), "1.2.3.2".into()]));
    }

    #[test]
    fn every_level_and_retrieve_match_only_studies_of_the_callers_facilities() {
        for level in ["STUDY", "SERIES", "IMAGE"] {
            let q = find_query(&identifier(level, &[]), Model::StudyRoot, "NOCTIS", &[3, 7]).unwrap();
            assert!(
                q.sql
                    .contains(" WHERE COALESCE(st.facility_id, 0) = ANY($1::int8[]) ORDER BY"),
                "{level}: {}",
                q.sql
            );
            assert_eq!(q.params, vec![Param::Ints(vec![3, 7])], "{level}");
        }
        // PATIENT level: patients with a visible study; their counts count only visible studies.
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("PATIENT"),
        ));
        obj.put(DataElement::new(
            tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
            VR::IS,
            PrimitiveValue::Empty,
        ));
        let id = Identifier::from_object(&obj, Model::PatientRoot).unwrap();
        let q = find_query(&id, Model::PatientRoot, "NOCTIS", &[0]).unwrap();
        assert!(q.sql.contains(
            " WHERE EXISTS (SELECT 1 FROM pacs_study v WHERE v.patient_id = p.id \
             AND COALESCE(v.facility_id, 0) = ANY($1::int8[])) ORDER BY"
        ));
        assert!(q.columns[0].contains("x.patient_id = p.id AND COALESCE(x.facility_id, 0) = ANY($1::int8[])"));
        assert_eq!(q.params, vec![Param::Ints(vec![0])]);
        let id = identifier("STUDY", &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3")]);
        let (sql, params) = retrieve_query(&id, Model::StudyRoot, &[5]).unwrap();
        assert!(sql.contains(
            "WHERE COALESCE(st.facility_id, 0) = ANY($1::int8[]) AND st.study_instance_uid = ANY($2::text[])"
        ));
        assert_eq!(params[0], Param::Ints(vec![5]));
    }
}
