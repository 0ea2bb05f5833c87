// Compile Java sources with Janino (shipped with Yamcs) from Nashorn (also shipped), so that a
// Java runtime without a JDK compiler suffices: jjs-style arguments SOURCE OUT_DIR CLASSPATH.
var File = Java.type("java.io.File");
var Files = Java.type("java.io.File[]");
var Compiler = Java.type("org.codehaus.janino.Compiler");
var compiler = new Compiler();
var classpath = arguments[2].split(File.pathSeparator).filter(function (p) { return p.length > 0; });
compiler.setClassPath(Java.to(classpath.map(function (p) { return new File(p); }), Files));
compiler.setDestinationDirectory(new File(arguments[1]), false);
compiler.compile(Java.to([new File(arguments[0])], Files));
