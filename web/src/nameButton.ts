// "You: <name>": a button that turns into a field for changing the display name others see.
import { h } from './dom';
import { saveName, type Identity } from './identity';

/** The button; `onChange` receives the stored identity after each change. */
export function nameButton(identity: Identity, onChange: (identity: Identity) => void): HTMLButtonElement {
  let current = identity;
  const button = h('button', { class: 'button button-quiet name-button', type: 'button', title: 'Change the name others see' }, `You: ${current.name}`);
  button.addEventListener('click', () => {
    const input = h('input', { class: 'name-input', type: 'text', maxlength: 40, 'aria-label': 'Your display name', value: current.name });
    button.replaceWith(input);
    input.focus();
    input.select();
    let done = false;
    const finish = (save: boolean) => {
      if (done) return;
      done = true;
      if (save && input.value.trim() && input.value.trim() !== current.name) {
        current = saveName(input.value);
        onChange(current);
      }
      button.textContent = `You: ${current.name}`;
      input.replaceWith(button);
      button.focus();
    };
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') finish(true);
      else if (event.key === 'Escape') finish(false);
    });
    input.addEventListener('blur', () => finish(true));
  });
  return button;
}
