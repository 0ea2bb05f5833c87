// Compile Java sources with Janino (shipped with Yamcs) from Nashorn (also shipped), so that a
// Java runtime without a JDK compiler suffices. Arguments: SOURCES OUT_DIR CLASSPATH, SOURCES
// and CLASSPATH each a path list.
var File = Java.type("java.io.File");
var Files = Java.type("java.io.File[]");
var Compiler = Java.type("org.codehaus.janino.Compiler");

function files(list) {
    var paths = list.split(File.pathSeparator).filter(function (p) { return p.length > 0; });
    return Java.to(paths.map(function (p) { return new File(p); }), Files);
}

var compiler = new Compiler();
compiler.setClassPath(files(arguments[2]));
compiler.setDestinationDirectory(new File(arguments[1]), false);
compiler.compile(files(arguments[0]));
