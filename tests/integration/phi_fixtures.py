"""Inbound messages with planted PHI, unique to one test run."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.data import get_testdata_file

from medstream.topics import EHR_INBOUND_DICOM, EHR_INBOUND_FHIR, EHR_INBOUND_HL7V2


@dataclass(frozen=True)
class Planted:
    """The PHI values of one synthetic patient, and the messages that carry them."""

    values: dict[str, str]
    messages: list[tuple[str, bytes, str]]  # topic, value, message-id header
    expected_events: int


def build(run: str) -> Planted:
    rng = random.Random(run)
    digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    values = {
        "given": "Thaddeus",
        "family": "Vandermolen" + rng.choice(["ska", "berg", "wright"]),
        "patient_id": f"PAT{digits(7)}",
        "mrn": f"MRN{digits(7)}",
        "ssn": f"{digits(3)}-{digits(2)}-{digits(4)}",
        "phone": f"(617) 555-{digits(4)}",
        "email": f"thaddeus.v{digits(4)}@mail.example.com",
        "street": f"{digits(3)} Quillfeather Lane",
        "city": "Marblehead",
        "birth_iso": "1931-02-03",
        "birth_hl7": "19310203",
        "institution": "Marblehead Harbor Hospital",
        "physician": "Ignatius Okonkwo",
        "note_date": "03/14/2026",
    }
    v = values
    note = (
        f"Progress note for {v['given']} {v['family']} (MRN {v['mrn']}), DOB {v['birth_iso']}. "
        f"Seen on {v['note_date']} at {v['institution']} by Dr. {v['physician']}. "
        f"Lives at {v['street']}, {v['city']}, MA 01945. Phone {v['phone']}, "
        f"email {v['email']}, SSN {v['ssn']}. Small left pleural effusion, no pneumothorax."
    )
    patient = {
        "resourceType": "Patient",
        "id": v["patient_id"],
        "identifier": [{"system": "urn:oid:1.2.3.4", "value": v["mrn"]}],
        "name": [{"family": v["family"], "given": [v["given"]]}],
        "telecom": [
            {"system": "phone", "value": v["phone"]},
            {"system": "email", "value": v["email"]},
        ],
        "gender": "male",
        "birthDate": v["birth_iso"],
        "address": [
            {"line": [v["street"]], "city": v["city"], "state": "MA", "postalCode": "01945"}
        ],
    }
    reference = {"reference": f"Patient/{v['patient_id']}"}
    observation = {
        "resourceType": "Observation",
        "id": "obs1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": reference,
        "effectiveDateTime": "2026-03-14T08:00:00Z",
        "valueQuantity": {"value": 112, "unit": "/min"},
        "note": [{"text": f"Called {v['given']} {v['family']} at {v['phone']}."}],
    }
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": reference,
        "date": "2026-03-14T09:00:00Z",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(note.encode()).decode(),
                }
            }
        ],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"http://ehr.example/Patient/{v['patient_id']}", "resource": patient},
            {"resource": observation},
            {"resource": document},
        ],
    }
    pid = (
        f"PID|1||{v['mrn']}^^^HOSP^MR~{v['ssn']}^^^SSA^SS||{v['family']}^{v['given']}||"
        f"{v['birth_hl7']}|M|||{v['street']}^^{v['city']}^MA^01945||{v['phone']}|||||ACCT{digits(6)}|{v['ssn']}"
    )
    msh = (
        "MSH|^~\\&|EPIC|"
        + v["institution"].replace(" ", "")
        + "|MS|MS|20260314100000||{type}|{id}|P|2.5.1"
    )
    adt = "\r".join(
        [
            msh.format(type="ADT^A01^ADT_A01", id="C1"),
            "EVN|A01|20260314100000",
            pid,
            f"NK1|1|{v['family']}^Martha|WIFE",
            f"PV1|1|I|4W^401^A||||9^{v['physician'].split()[1]}^{v['physician'].split()[0]}",
        ]
    )
    oru = "\r".join(
        [
            msh.format(type="ORU^R01^ORU_R01", id="C2"),
            pid,
            "OBR|1|||71020^CXR CHEST",
            "OBX|1|NM|8867-4^Heart rate^LN||118|/min|||||F|||20260314103000",
            "OBX|2|NM|9279-1^Resp rate^LN||24|/min|||||F|||20260314103000",
            f"OBX|3|TX|18782-3^Report^LN||{note.replace('|', ' ')}||||||F",
        ]
    )
    mdm = "\n".join(
        [
            msh.format(type="MDM^T02^MDM_T02", id="C3"),
            pid,
            "TXA|1|PN^Progress note|TX|20260314110000",
            f"OBX|1|TX|11506-3^Note^LN||{note}||||||F",
            f"NTE|1||Family contact {v['given']} at {v['phone']}",
        ]
    )
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = f"{v['family']}^{v['given']}"
    ds.PatientID = v["patient_id"]
    ds.PatientBirthDate = v["birth_hl7"]
    ds.InstitutionName = v["institution"]
    ds.ReferringPhysicianName = v["physician"].replace(" ", "^")
    ds.OtherPatientIDs = v["mrn"]
    ds.add_new(0x00091010, "LO", f"private {v['mrn']}")
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    messages = [
        (EHR_INBOUND_FHIR.name, json.dumps(bundle).encode(), f"leak-{run}-fhir"),
        (EHR_INBOUND_HL7V2.name, adt.encode(), f"leak-{run}-adt"),
        (EHR_INBOUND_HL7V2.name, oru.encode(), f"leak-{run}-oru"),
        (EHR_INBOUND_HL7V2.name, mdm.encode(), f"leak-{run}-mdm"),
        (EHR_INBOUND_DICOM.name, out.getvalue(), f"leak-{run}-dicom"),
    ]
    # Patient, vitals, document (FHIR); patient (ADT); vitals + document (ORU);
    # document (MDM); imaging (DICOM).
    return Planted(values=values, messages=messages, expected_events=8)
