// The CodeMirror 6 editor bound to the shared Y.Text: local edits become Yjs updates, and other people's
// cursors and selections are drawn with their name labels.
import { EditorState } from '@codemirror/state';
import { EditorView, drawSelection, highlightActiveLine, keymap, placeholder } from '@codemirror/view';
import { defaultKeymap } from '@codemirror/commands';
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next';
import * as Y from 'yjs';
import type { WebsocketProvider } from 'y-websocket';

type Awareness = WebsocketProvider['awareness'];

/** The own selection, a tint that stays visible under the active line's highlight. */
const selectionTheme = EditorView.theme({
  '.cm-selectionBackground, &.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground': {
    background: 'rgba(47, 91, 211, 0.22)',
  },
});

/**
 * Mounts an editor for `text` into `parent`; remote cursors come from `awareness`. A `readOnly` editor (a view
 * link) refuses every change but stays focusable, so its caret and selection still move and, through awareness,
 * show to the others as a cursor.
 */
export function mountEditor(parent: HTMLElement, text: Y.Text, awareness: Awareness, { readOnly = false } = {}): EditorView {
  // Undo in y-codemirror writes to the Y.Text directly, past CodeMirror's read-only check: a viewer gets none.
  const undoManager = readOnly ? false : new Y.UndoManager(text);
  const state = EditorState.create({
    doc: text.toString(),
    extensions: [
      keymap.of(readOnly ? defaultKeymap : [...yUndoManagerKeymap, ...defaultKeymap]),
      EditorState.readOnly.of(readOnly),
      drawSelection(),
      highlightActiveLine(),
      EditorView.lineWrapping,
      selectionTheme,
      placeholder(readOnly ? 'Nothing written yet. What others type appears here as they type it.' : 'Start typing. Everyone with the link sees your changes as you make them.'),
      EditorView.contentAttributes.of({
        'aria-label': 'Document text',
        'aria-multiline': 'true',
        'aria-readonly': String(readOnly),
        spellcheck: String(!readOnly),
      }),
      yCollab(text, awareness, { undoManager }),
    ],
  });
  return new EditorView({ state, parent });
}
