// The text of a version marked against the document's text now, for the version preview. The differences come
// from jsdiff's diffWordsWithSpace (a token is a word, a punctuation mark, a newline or a run of spaces, so the
// marks fall on whole words and both texts are kept exactly): text added since the version is an <ins>, shown
// green; text removed since is a <del>, shown red and struck through; the rest is plain.
import { diffWordsWithSpace } from 'diff';
import { h, replaceChildren } from './dom';

/** How long a diff may take before it gives up: long texts that share little would otherwise freeze the page. */
const DIFF_TIMEOUT_MS = 500;

/** What `showDiff` found: characters added and removed since the version, or null when it gave up. */
export type DiffCount = { added: number; removed: number } | null;

/** The one-line legend that says what the marks mean. */
export function diffLegend(): HTMLElement {
  return h(
    'p',
    { class: 'diff-legend' },
    'Compared with now: ',
    h('ins', { class: 'diff-added' }, 'added since'),
    ' ',
    h('del', { class: 'diff-removed' }, 'removed since'),
  );
}

/** Shows `then` (a version's text) in `target`, marked with what changed to make it `now`. */
export function showDiff(target: HTMLElement, then: string, now: string): DiffCount {
  const changes = diffWordsWithSpace(then, now, { timeout: DIFF_TIMEOUT_MS });
  if (!changes) {
    showText(target, then);
    return null;
  }
  const count = { added: 0, removed: 0 };
  const parts: Node[] = [];
  for (const change of changes) {
    if (change.added) {
      count.added += change.value.length;
      parts.push(h('ins', { class: 'diff-added' }, change.value));
    } else if (change.removed) {
      count.removed += change.value.length;
      parts.push(h('del', { class: 'diff-removed' }, change.value));
    } else {
      parts.push(document.createTextNode(change.value));
    }
  }
  fill(target, parts, then === '' && now === '');
  return count;
}

/** Shows `text` unmarked. */
export function showText(target: HTMLElement, text: string): void {
  fill(target, text ? [document.createTextNode(text)] : [], !text);
}

function fill(target: HTMLElement, parts: Node[], empty: boolean): void {
  target.classList.toggle('diff-empty', empty);
  if (empty) replaceChildren(target, h('span', { class: 'diff-placeholder' }, 'Empty: nothing was written yet.'));
  else replaceChildren(target, ...parts);
}
