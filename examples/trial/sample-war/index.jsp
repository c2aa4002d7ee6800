<%@ page contentType="text/html; charset=UTF-8" %>
<!DOCTYPE html>
<html>
<head><title>sample</title></head>
<body>
<h1>Hello from sample.war</h1>
<p>Installed into Tomcat's webapps by the warloader init container.</p>
<p>Served at <%= new java.util.Date() %> by <%= application.getServerInfo() %>.</p>
</body>
</html>
