// Bun `with { type: 'file' }` imports resolve to the embedded file's path.
declare module '@electric-sql/pglite/pglite.wasm' {
  const path: string;
  export default path;
}
declare module '@electric-sql/pglite/initdb.wasm' {
  const path: string;
  export default path;
}
declare module '@electric-sql/pglite/pglite.data' {
  const path: string;
  export default path;
}
declare module '*.tar.gz' {
  const path: string;
  export default path;
}
