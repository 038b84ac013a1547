// DICOMweb reads for the viewer: QIDO-RS series of a study, WADO-RS series metadata, and the wadors: image ids
// (one per frame) in display order. Requests are same-origin, so the session cookie authenticates them.

export const TAG = {
  PatientName: '00100010',
  PatientID: '00100020',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  StudyDate: '00080020',
  StudyTime: '00080030',
  StudyDescription: '00081030',
  AccessionNumber: '00080050',
  InstitutionName: '00080080',
  Modality: '00080060',
  SeriesInstanceUID: '0020000E',
  SeriesNumber: '00200011',
  SeriesDescription: '0008103E',
  NumberOfSeriesRelatedInstances: '00201209',
  SOPInstanceUID: '00080018',
  InstanceNumber: '00200013',
  NumberOfFrames: '00280008',
  ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037',
  SliceLocation: '00201041',
  SliceThickness: '00180050',
  PixelSpacing: '00280030',
  Rows: '00280010',
  Columns: '00280011',
  FrameTime: '00181063',
  CineRate: '00180040',
  RecommendedDisplayFrameRate: '00082144',
};

export function value(dataset, tag, index = 0) {
  const element = dataset?.[tag];
  const values = element?.Value;
  if (!values || values.length <= index) return undefined;
  const v = values[index];
  if (element.vr === 'PN') {
    // PS3.18 splits a PN into its component groups; show them all, as the worklist does ("=" between groups).
    const groups = [v?.Alphabetic ?? '', v?.Ideographic ?? '', v?.Phonetic ?? ''];
    while (groups.length > 1 && !groups.at(-1)) groups.pop();
    return groups.join('=');
  }
  return v;
}

export function values(dataset, tag) {
  return dataset?.[tag]?.Value ?? [];
}

// "Doe^Jane^^Dr" -> "Doe, Jane Dr": the same reading as the worklist's person_name filter.
export function personName(pn) {
  if (!pn) return '';
  return String(pn)
    .split('=')
    .map((group) => {
      const parts = group.split('^').map((p) => p.trim());
      const family = parts[0];
      const rest = parts.slice(1).filter(Boolean).join(' ');
      return family && rest ? `${family}, ${rest}` : family || rest;
    })
    .join('=');
}

export function dicomDate(da) {
  return da && /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da || '';
}

function getJson(url) {
  return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/dicom+json' } }).then((r) =>
    responseJson(r, url),
  );
}

async function responseJson(response, url) {
  if (response.status === 204) return [];
  if (!response.ok) {
    let detail = '';
    try {
      detail = (await response.json()).detail ?? '';
    } catch {
      /* not JSON */
    }
    throw new Error(`${response.status} ${response.statusText} ${detail} (${url})`.trim());
  }
  return response.json();
}

export class DicomWeb {
  constructor(root, studyUid) {
    // Absolute, because the loader keys its metadata by the URI inside the image id.
    this.root = new URL(root, window.location.href).href.replace(/\/$/, '');
    this.studyUid = studyUid;
  }

  studyUrl() {
    return `${this.root}/studies/${encodeURIComponent(this.studyUid)}`;
  }

  seriesUrl(seriesUid) {
    return `${this.studyUrl()}/series/${encodeURIComponent(seriesUid)}`;
  }

  thumbnailUrl(seriesUid) {
    return `${this.seriesUrl(seriesUid)}/thumbnail`;
  }

  // The series as the page listed them, else as QIDO-RS finds them.
  async seriesList(fromPage) {
    if (Array.isArray(fromPage)) {
      return fromPage.map((s) => ({ ...s, number: s.number ?? NaN, count: Number(s.count ?? 0) }));
    }
    const list = await getJson(`${this.studyUrl()}/series`);
    return list
      .map((ds) => ({
        uid: value(ds, TAG.SeriesInstanceUID),
        number: Number(value(ds, TAG.SeriesNumber) ?? NaN),
        modality: value(ds, TAG.Modality) ?? '',
        description: value(ds, TAG.SeriesDescription) ?? '',
        count: Number(value(ds, TAG.NumberOfSeriesRelatedInstances) ?? 0),
      }))
      .filter((s) => s.uid)
      .sort((a, b) => (Number.isNaN(a.number) ? 1e9 : a.number) - (Number.isNaN(b.number) ? 1e9 : b.number));
  }

  // The series' metadata: the request the page started before the bundle ran (window.noctisEarly), else a new one.
  seriesMetadata(seriesUid) {
    const early = window.noctisEarly;
    if (early && early.seriesUid === seriesUid && early.response) {
      window.noctisEarly = null; // used once: a later reload of the series asks again
      return early.response.then((r) => responseJson(r, early.url));
    }
    return getJson(`${this.seriesUrl(seriesUid)}/metadata`);
  }

  // The series' instances as {imageId, metadata} per frame, in display order (along the slice normal, else by
  // instance number).
  async seriesImages(seriesUid) {
    const instances = await this.seriesMetadata(seriesUid);
    performance.mark('noctis:json');
    instances.sort(instanceOrder(instances));
    const images = [];
    for (const ds of instances) {
      const sop = value(ds, TAG.SOPInstanceUID);
      if (!sop || value(ds, TAG.Rows) === undefined) continue; // not an image (SR, PR, ...)
      const frames = Math.max(1, Number(value(ds, TAG.NumberOfFrames) ?? 1) || 1);
      const base = `wadors:${this.seriesUrl(seriesUid)}/instances/${encodeURIComponent(sop)}/frames/`;
      for (let f = 1; f <= frames; f += 1) images.push({ imageId: `${base}${f}`, metadata: ds, frame: f });
    }
    return { instances, images };
  }
}

function instanceOrder(instances) {
  const first = instances.find((ds) => values(ds, TAG.ImageOrientationPatient).length === 6);
  const iop = first ? values(first, TAG.ImageOrientationPatient).map(Number) : null;
  const normal = iop
    ? [
        iop[1] * iop[5] - iop[2] * iop[4],
        iop[2] * iop[3] - iop[0] * iop[5],
        iop[0] * iop[4] - iop[1] * iop[3],
      ]
    : null;
  const position = (ds) => {
    const ipp = values(ds, TAG.ImagePositionPatient).map(Number);
    return normal && ipp.length === 3 ? ipp[0] * normal[0] + ipp[1] * normal[1] + ipp[2] * normal[2] : null;
  };
  const number = (ds) => Number(value(ds, TAG.InstanceNumber) ?? 0);
  const allPositioned = normal && instances.every((ds) => position(ds) !== null);
  return (a, b) => {
    if (allPositioned) {
      const d = position(a) - position(b);
      if (d !== 0) return d;
    }
    return number(a) - number(b);
  };
}
