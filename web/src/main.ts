// Entry point: picks the page for the current path. Every page is a full load of this one bundle.
import './styles.css';
import { showEditorPage } from './editorPage';
import { showListPage } from './listPage';
import { showMessage } from './message';

function route(): void {
  const main = document.getElementById('main');
  if (!main) return;
  const path = location.pathname;
  const docMatch = /^\/d\/([^/]+)\/?$/.exec(path);
  if (docMatch) {
    void showEditorPage(main, decodeURIComponent(docMatch[1]));
  } else if (path === '/' || path === '/index.html') {
    void showListPage(main);
  } else {
    showMessage(main, 'Page not found', 'There is nothing at this address.');
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', route);
else route();
