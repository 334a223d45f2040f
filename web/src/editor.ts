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

/** Mounts an editor for `text` into `parent`; remote cursors come from `awareness`. */
export function mountEditor(parent: HTMLElement, text: Y.Text, awareness: Awareness): EditorView {
  const undoManager = new Y.UndoManager(text);
  const state = EditorState.create({
    doc: text.toString(),
    extensions: [
      keymap.of([...yUndoManagerKeymap, ...defaultKeymap]),
      drawSelection(),
      highlightActiveLine(),
      EditorView.lineWrapping,
      selectionTheme,
      placeholder('Start typing. Everyone with the link sees your changes as you make them.'),
      EditorView.contentAttributes.of({ 'aria-label': 'Document text', 'aria-multiline': 'true', spellcheck: 'true' }),
      yCollab(text, awareness, { undoManager }),
    ],
  });
  return new EditorView({ state, parent });
}
