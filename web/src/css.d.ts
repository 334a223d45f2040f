// esbuild turns CSS imports into the separate app.css file.
declare module '*.css';
