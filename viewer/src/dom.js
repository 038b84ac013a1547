// DOM building. DICOM text is data: every string goes in through textContent, never innerHTML.
export function el(tag, { cls, text, title, attrs, on } = {}, children = []) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (title) node.title = String(title);
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, String(v));
  for (const [event, handler] of Object.entries(on ?? {})) node.addEventListener(event, handler);
  for (const child of children) if (child) node.append(child);
  return node;
}

export function setLines(node, lines) {
  node.replaceChildren(...lines.filter((l) => l).map((line) => el('div', { text: line })));
}
