"""Note templates for the annotated corpus. {SLOT} marks a value the generator fills and
annotates; slots ending in _X are filled but are not PHI (e.g. ages under 90, states).

32 templates in five styles make the main corpus; 8 more, in styles the detector was
never tuned on, are held out for the generalisation report.
"""

MAIN: dict[str, list[str]] = {
    "discharge_summary": [
        "DISCHARGE SUMMARY\nPatient: {NAME_FULL}    MRN: {MRN}\nDOB: {DATE}    Admitted: {DATE}    Discharged: {DATE}\nAttending: {DR_FULL}, MD\n\nHOSPITAL COURSE: {NAME_LAST} is a {AGE_X}-year-old man admitted to {HOSPITAL} with community-acquired pneumonia. Chest x-ray on {DATE} showed right lower lobe consolidation. He improved on ceftriaxone and azithromycin.\n\nFOLLOW-UP: See Dr. {DR_LAST} in clinic on {DATE}. Call {PHONE} with questions.",
        "Discharge Summary - {HOSPITAL}\nName: {NAME_LAST}, {NAME_FIRST}\nMedical record number: {MRN}\nAge: {AGE90}\nAddress: {STREET}, {CITY}, {STATE_X} {ZIP}\n\nThe patient, a {AGE90}-year-old woman, was admitted on {DATE} after a fall at home. CT head negative. She was discharged to her daughter {RELATIVE} on {DATE}.\nPCP: Dr. {DR_FULL}, fax {FAX}.",
        "DISCHARGE NOTE\n{NAME_FULL} (DOB {DATE}, MRN {MRN}) was treated for CHF exacerbation from {DATE} to {DATE}. Diuresed 4 L. Echo showed EF 30%.\nDischarge medications reconciled by {DR_FULL}, RN.\nInsurance plan ID: {PLAN}. Emergency contact {RELATIVE_FULL}, {PHONE}.",
        "Summary of admission for {NAME_FULL}.\nAdmit {DATE}; discharge {DATE}.\nReason: sepsis secondary to UTI. Blood cultures grew E. coli.\nThe patient lives alone at {STREET} in {CITY}. Social work arranged home services; agency contact {EMAIL}.\nFollow up with {DR_FULL} at {HOSPITAL} in two weeks.",
        "DISCHARGE SUMMARY\n\nPATIENT NAME: {NAME_FULL}\nACCOUNT NUMBER: {ACCOUNT}\nDATE OF ADMISSION: {DATE}\nDATE OF DISCHARGE: {DATE}\n\nDIAGNOSES: Atrial fibrillation with rapid ventricular response. A {AGE90} year old with a pacemaker (serial {SERIAL}).\nDISPOSITION: Home with VNA. Patient portal: {URL}",
        "Dear Dr. {DR_LAST},\nYour patient {NAME_FULL} was discharged from {HOSPITAL} on {DATE}. She was admitted on {DATE} with a COPD exacerbation. Please see her within one week. Her SSN on file is {SSN}; MRN {MRN}.\nSincerely, {DR_FULL}, MD",
    ],
    "progress_note": [
        "PROGRESS NOTE {DATE}\nS: {NAME_FIRST} reports less shortness of breath. Wife {RELATIVE} at bedside.\nO: HR 88, BP 132/78, SpO2 95% on 2 L.\nA/P: Pneumonia improving. Continue antibiotics. Discussed with Dr. {DR_LAST}.",
        "Hospital day 3 for {NAME_FULL}, MRN {MRN}.\nOvernight: fever to 38.4. Cultures sent {DATE}.\nExam: crackles at right base.\nPlan: broaden to pip-tazo; family ({RELATIVE_FULL}, {PHONE}) updated. - {DR_FULL}, MD",
        "Progress Note\nPt: {NAME_LAST}, {NAME_FIRST}   DOB: {DATE}\n{AGE_X} yo with DKA, anion gap closed on {DATE}. Transition to subcutaneous insulin. Endocrine consulted (Dr. {DR_LAST}, pager {PHONE}).",
        "Daily note - {DATE}\n{NAME_FULL} is a {AGE90}-year-old resident of {CITY} admitted with hip fracture. POD 2. Pain controlled. PT to evaluate. Device: insulin pump S/N {SERIAL}.",
        "Note by {DR_FULL}, NP on {DATE}:\n{NAME_FIRST} {NAME_LAST} seen and examined. Remains on room air. Labs from {DATE} reviewed: WBC 9.2, Cr 1.1. Plan discharge tomorrow to {STREET}, {CITY}.",
        "PROGRESS NOTE\nPatient ID: {MRN}\nSeen with attending {DR_FULL}.\nThe patient is improving. Daughter {RELATIVE} called from {PHONE} asking about discharge. Explained plan. IP of telehealth session: {IP}.",
    ],
    "radiology_report": [
        "EXAM: CHEST PA AND LATERAL\nPATIENT: {NAME_FULL}   MRN: {MRN}   DOB: {DATE}\nDATE OF SERVICE: {DATE}\nCOMPARISON: {DATE}\nFINDINGS: Small left pleural effusion. No pneumothorax. Heart size normal.\nIMPRESSION: Small left effusion.\nDictated by: {DR_FULL}, MD",
        "RADIOLOGY REPORT - {HOSPITAL}\nAccession: {ACCOUNT}\nName: {NAME_LAST}, {NAME_FIRST}\nExam date: {DATE}\nCT CHEST WITH CONTRAST\nFindings: Bilateral ground-glass opacities. No pulmonary embolism.\nImpression: Findings may represent atypical infection.\nElectronically signed by {DR_FULL} on {DATE}.",
        "PORTABLE CHEST X-RAY {DATE}\nHistory: {AGE90}-year-old with hypoxia.\nFindings: Endotracheal tube 4 cm above carina. Cardiomegaly. Pulmonary edema.\nCritical result called to Dr. {DR_LAST} at {PHONE} on {DATE}.",
        "Chest radiograph for {NAME_FULL} ({MRN}) performed {DATE}.\nCannot exclude early consolidation in the left lower lobe. No pleural effusion.\nReported by {DR_FULL}, FRCR. Images available at {URL}.",
        "MRI BRAIN W/WO CONTRAST\nPt: {NAME_FULL}, DOB {DATE}\nOrdering: Dr. {DR_FULL}\nFindings: Chronic small vessel ischemic change. No acute infarct.\nImpression: No acute intracranial abnormality.\nPACS workstation {IP}.",
        "X-RAY LEFT WRIST 2 VIEWS ({DATE})\nPatient {NAME_LAST}, MRN {MRN}, age {AGE90}.\nFindings: Distal radius fracture with dorsal angulation.\nResident: {DR_FULL}. Attending: {DR_FULL}, MD.",
    ],
    "nursing_note": [
        "Nursing note {DATE} 0700: {NAME_FIRST} resting comfortably. Vitals stable. Foley draining clear urine. Son {RELATIVE} visited; prefers phone {PHONE}.",
        "RN NOTE - {NAME_FULL}, room 4W-12\nShift: {DATE} nights.\nPt confused overnight, reoriented. Fall precautions in place. Called Dr. {DR_LAST}. Email from family ({EMAIL}) answered.",
        "Nursing Assessment {DATE}\nPatient: {NAME_FULL}\nMRN: {MRN}\nSkin intact. Pain 3/10. Tolerating diet. Patient's husband {RELATIVE_FULL} requests update at {PHONE}.",
        "0800 {DATE}: Received pt {NAME_LAST} from ED. {AGE90} y/o female. Oriented x2. Home address confirmed as {STREET}, {CITY}, {STATE_X} {ZIP}.",
        "Nurse's note: {NAME_FULL} discharged {DATE} via wheelchair with daughter {RELATIVE}. Teaching completed. Follow-up with {DR_FULL} on {DATE}.",
        "Shift summary for {NAME_FIRST} {NAME_LAST} (acct {ACCOUNT}): PICC line flushed. Blood glucose 142. Medical device ID {DEVICE} checked. Reported to charge nurse {DR_FULL}, RN.",
    ],
    "referral_letter": [
        "{HOSPITAL}\n{STREET}\n{CITY}, {STATE_X} {ZIP}\n\n{DATE}\n\nDear Dr. {DR_LAST},\nThank you for seeing {NAME_FULL} (DOB {DATE}) regarding chronic cough. Chest CT on {DATE} showed bronchiectasis.\nYours sincerely,\n{DR_FULL}, MD\nTel {PHONE}  Fax {FAX}",
        "REFERRAL\nTo: {DR_FULL}, Pulmonology\nFrom: {DR_FULL}, Primary Care\nRe: {NAME_FULL}, MRN {MRN}, insurance member {PLAN}\nDate: {DATE}\nPlease evaluate for interstitial lung disease. Patient can be reached at {PHONE} or {EMAIL}.",
        "Dear Colleague,\nI am referring Mr. {NAME_LAST}, a {AGE90}-year-old gentleman, for cardiology review. ECG on {DATE} showed new LBBB. His son {RELATIVE_FULL} accompanies him.\nRegards, Dr. {DR_FULL}\n{HOSPITAL}",
        "Referral letter dated {DATE}\nPatient: {NAME_FIRST} {NAME_LAST}\nAddress: {STREET}, {CITY} {ZIP}\nSSN: {SSN}\nDriver license: {LICENSE}\nReason: memory decline over 2 years. MMSE 22/30.\nReferring clinician: {DR_FULL}",
        "To the Sleep Clinic at {HOSPITAL}:\nPlease see {NAME_FULL} (chart {MRN}). CPAP device serial number {SERIAL}. Last study {DATE}. Portal account: {URL}\nThank you, {DR_FULL}, DO",
        "Ms. {NAME_LAST} ({DATE}) is referred to physiotherapy after a fall on {DATE}. Lives with partner {RELATIVE} at {STREET}. Contact {PHONE}. - Dr {DR_LAST}",
    ],
}

HELD_OUT: dict[str, list[str]] = {
    "ed_triage": [
        "ED TRIAGE {DATE} 14:32 | {NAME_LAST}^{NAME_FIRST} | MRN#{MRN} | CC: chest pain x2h | ESI 2 | brought by EMS from {STREET} | NOK: {RELATIVE_FULL} {PHONE}",
    ],
    "telephone_encounter": [
        "Telephone encounter. Spoke with {NAME_FIRST} ({PHONE}) on {DATE} re: lab results. Potassium 5.8 - advised ED. Also emailed {EMAIL}. {DR_FULL}",
    ],
    "pathology_report": [
        "SURGICAL PATHOLOGY  Case {ACCOUNT}\nPatient {NAME_FULL}  Received {DATE}\nSpecimen: lung, right upper lobe, wedge.\nDiagnosis: adenocarcinoma, 1.4 cm, margins negative.\nPathologist {DR_FULL}, MD; {HOSPITAL}",
    ],
    "operative_note": [
        "OPERATIVE REPORT. Date of surgery: {DATE}. Surgeon: {DR_FULL}, MD. Assistant: {DR_FULL}. Patient: {NAME_FULL}, {AGE90} yo. Procedure: laparoscopic cholecystectomy. Implant lot {SERIAL}.",
    ],
    "consult_note": [
        "ID CONSULT\nRequested by Dr. {DR_LAST} for {NAME_LAST}, {NAME_FIRST} on {DATE}.\nHx: recurrent C. diff. Recently travelled from {CITY}.\nRec: fidaxomicin. Will follow. Pager {PHONE}.",
    ],
    "portal_message": [
        "Portal message from {NAME_FULL} <{EMAIL}> sent {DATE}: hi doctor {DR_LAST}, my new address is {STREET}, {CITY} {ZIP} and my cell is {PHONE}. thanks",
    ],
    "pharmacy_note": [
        "Pharmacy: warfarin dosing for {NAME_FULL} (MRN {MRN}, plan {PLAN}). INR {DATE} 3.4. Hold tonight. Verified by {DR_FULL}, PharmD.",
    ],
    "social_work": [
        "SW note {DATE}: met {NAME_FIRST} and her niece {RELATIVE_FULL}. Lives in {CITY} at {STREET}; income from SSA (SSN {SSN}). Referred to {HOSPITAL} home care.",
    ],
}
