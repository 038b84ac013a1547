// Window/level presets per modality (width/center in the modality's units: HU for CT).
export const PRESETS = {
  CT: [
    { key: '1', id: 'brain', label: 'Brain', width: 80, center: 40 },
    { key: '2', id: 'lung', label: 'Lung', width: 1500, center: -600 },
    { key: '3', id: 'bone', label: 'Bone', width: 1800, center: 400 },
    { key: '4', id: 'abdomen', label: 'Abdomen', width: 400, center: 50 },
    { key: '5', id: 'soft-tissue', label: 'Soft tissue', width: 350, center: 40 },
  ],
  PT: [{ key: '1', id: 'suv', label: 'SUV 0–10', width: 10, center: 5 }],
};

export function presetsFor(modality) {
  return PRESETS[modality] ?? [];
}

export function voiFromWindow(width, center) {
  return { lower: center - width / 2, upper: center + width / 2 };
}

export function windowFromVoi(range) {
  if (!range) return null;
  return { width: range.upper - range.lower, center: (range.upper + range.lower) / 2 };
}
